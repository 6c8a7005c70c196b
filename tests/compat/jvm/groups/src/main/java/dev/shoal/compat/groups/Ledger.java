package dev.shoal.compat.groups;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;

import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

/**
 * What was produced and what every member consumed and committed, in one global order
 * (a sequence number taken when the event is reported).
 *
 * <p>Loss: every produced record must be consumed at least once, with the produced value.
 * Duplicates: a record (p, o) consumed again is allowed only while no commit covering it
 * (offset &gt; o on p) had succeeded before the repeat was reported: i.e. only records after the
 * last successful commit of their previous owner may come back after a rebalance.
 */
final class Ledger {

    /** Produced value per partition and offset. */
    final Map<TopicPartition, NavigableMap<Long, String>> produced = new ConcurrentHashMap<>();

    private long seq;
    private final Map<TopicPartition, Map<Long, List<long[]>>> consumed = new HashMap<>(); // offset -> [seq]
    private final Map<TopicPartition, List<long[]>> commits = new HashMap<>(); // [offset, seq]
    private final List<String> problems = new ArrayList<>();
    private final Map<TopicPartition, Map<Long, String>> firstConsumer = new HashMap<>();
    private final Map<TopicPartition, Map<Long, List<String>>> values = new HashMap<>();
    private final Map<String, Integer> consumedBy = new HashMap<>();

    void produced(TopicPartition tp, long offset, String value) {
        produced.computeIfAbsent(tp, k -> new ConcurrentSkipListMap<>()).put(offset, value);
    }

    int producedCount() {
        int n = 0;
        for (NavigableMap<Long, String> m : produced.values()) {
            n += m.size();
        }
        return n;
    }

    synchronized void consumed(String who, TopicPartition tp, long offset, String value) {
        long s = ++seq;
        consumedBy.merge(who, 1, Integer::sum);
        Map<Long, List<long[]>> perOffset = consumed.computeIfAbsent(tp, k -> new HashMap<>());
        List<long[]> seen = perOffset.computeIfAbsent(offset, k -> new ArrayList<>());
        if (!seen.isEmpty()) {
            // A repeat: fine unless a commit covering this record had already succeeded.
            for (long[] c : commits.getOrDefault(tp, List.of())) {
                if (c[0] > offset && c[1] < s) {
                    addProblem(String.format("%s consumed %s@%d again (first by %s) although offset %d was"
                            + " committed before", who, tp, offset,
                            firstConsumer.get(tp).get(offset), c[0]));
                    break;
                }
            }
        } else {
            firstConsumer.computeIfAbsent(tp, k -> new HashMap<>()).put(offset, who);
        }
        seen.add(new long[] {s});
        // Values are checked in verify(): the producer may note an offset after it was consumed.
        values.computeIfAbsent(tp, k -> new HashMap<>()).computeIfAbsent(offset, k -> new ArrayList<>())
                .add(who + "\0" + value);
    }

    /** How many records (repeats included) this member consumed. */
    synchronized int consumedBy(String who) {
        return consumedBy.getOrDefault(who, 0);
    }

    synchronized void committed(Map<TopicPartition, OffsetAndMetadata> offsets) {
        long s = ++seq;
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
            commits.computeIfAbsent(e.getKey(), k -> new ArrayList<>()).add(new long[] {e.getValue().offset(), s});
        }
    }

    private void addProblem(String p) {
        if (problems.size() < 20) {
            problems.add(p);
        } else if (problems.size() == 20) {
            problems.add("... (more)");
        }
    }

    /** Produced records not consumed yet. */
    synchronized int missing() {
        int n = 0;
        for (Map.Entry<TopicPartition, NavigableMap<Long, String>> e : produced.entrySet()) {
            Map<Long, List<long[]>> c = consumed.getOrDefault(e.getKey(), Map.of());
            for (Long o : e.getValue().keySet()) {
                if (!c.containsKey(o)) {
                    n++;
                }
            }
        }
        return n;
    }

    synchronized int duplicates() {
        int n = 0;
        for (Map<Long, List<long[]>> m : consumed.values()) {
            for (List<long[]> l : m.values()) {
                n += l.size() - 1;
            }
        }
        return n;
    }

    synchronized List<String> problems() {
        return new ArrayList<>(problems);
    }

    /** Throws unless everything produced was consumed with no disallowed duplicate. */
    synchronized void verify() {
        List<String> all = new ArrayList<>(problems);
        int bad = 0;
        for (Map.Entry<TopicPartition, Map<Long, List<String>>> e : values.entrySet()) {
            NavigableMap<Long, String> prod = produced.getOrDefault(e.getKey(), new java.util.TreeMap<>());
            for (Map.Entry<Long, List<String>> o : e.getValue().entrySet()) {
                String want = prod.get(o.getKey());
                for (String wv : o.getValue()) {
                    String[] f = wv.split("\0", 2);
                    if (want == null || !want.equals(f[1])) {
                        if (bad++ < 5) {
                            all.add(String.format("%s consumed %s@%d with value %s, produced %s", f[0], e.getKey(),
                                    o.getKey(), f[1], want == null ? "nothing there" : want));
                        }
                    }
                }
            }
        }
        if (bad > 5) {
            all.add((bad - 5) + " more records with unexpected values");
        }
        int miss = missing();
        if (miss > 0) {
            List<String> examples = new ArrayList<>();
            for (Map.Entry<TopicPartition, NavigableMap<Long, String>> e : produced.entrySet()) {
                Map<Long, List<long[]>> c = consumed.getOrDefault(e.getKey(), Map.of());
                for (Long o : e.getValue().keySet()) {
                    if (!c.containsKey(o) && examples.size() < 5) {
                        examples.add(e.getKey() + "@" + o);
                    }
                }
            }
            all.add(miss + " produced records never consumed, e.g. " + examples);
        }
        if (!all.isEmpty()) {
            throw new AssertionError(String.join("; ", all));
        }
    }
}
