package dev.shoal.compat.groups;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * One subscribing group member: polls, hands every record to its {@link Sink}, and commits
 * exactly what it processed with commitSync after each poll (and for revoked partitions in
 * onPartitionsRevoked, as applications do). A commit that fails because of a rebalance is kept
 * and retried while the partition is still owned; such records may then be consumed again by
 * the next owner, which is the only kind of duplicate the checks allow.
 *
 * <p>Runs its loop either on a thread of the test program ({@link #start()}) or as the main loop
 * of a separate JVM ({@link GroupWorker}).
 */
final class GroupMember {

    /** Where a member reports what it does. Called on the member's own thread. */
    interface Sink {
        void consumed(TopicPartition tp, long offset, String value);

        void committed(Map<TopicPartition, OffsetAndMetadata> offsets);

        /** After every poll: current assignment, generation and member id. */
        void state(Set<TopicPartition> assignment, int generation, String memberId);

        void event(String what);
    }

    final String name;
    final String topic;
    final Properties props;
    final Sink sink;

    volatile boolean stopRequested;
    volatile boolean finished;
    volatile Throwable error;
    volatile Set<TopicPartition> assignment = Set.of();
    volatile int generation = -1;
    volatile String memberId = "";
    /** Non-empty revocations, assignments and losses seen by the rebalance listener. */
    final AtomicInteger rebalanceCallbacks = new AtomicInteger();
    final AtomicInteger revocations = new AtomicInteger();
    final AtomicInteger commitFailures = new AtomicInteger();
    final List<String> events = Collections.synchronizedList(new ArrayList<>());
    /** Sleep after processing a non-empty poll, before committing (slows consumption down so
     *  a member can be closed or killed while it still has work, and widens the window in which
     *  records are processed but not committed). */
    volatile int pauseMs;
    private Thread thread;

    /** Next offset to commit per partition (member thread only). */
    private final Map<TopicPartition, Long> pending = new HashMap<>();

    GroupMember(String name, String topic, Properties props, Sink sink) {
        this.name = name;
        this.topic = topic;
        this.props = props;
        this.sink = sink;
    }

    GroupMember start() {
        thread = new Thread(this::run, "member-" + name);
        thread.setDaemon(true);
        thread.start();
        return this;
    }

    /** Asks the loop to stop, commit what is pending and close the consumer; waits (bounded). */
    void stop(Duration timeout) throws InterruptedException {
        stopRequested = true;
        if (thread != null) {
            thread.join(timeout.toMillis());
            if (thread.isAlive()) {
                throw new AssertionError("member " + name + " did not close within " + timeout.toSeconds() + " s");
            }
        }
    }

    /** Stops without throwing (for clean-up paths). */
    void stopQuietly() {
        try {
            stop(Duration.ofSeconds(20));
        } catch (Throwable ignored) {
            // best effort
        }
    }

    void event(String what) {
        events.add(what);
        sink.event(what);
    }

    void run() {
        KafkaConsumer<String, String> c = null;
        try {
            c = new KafkaConsumer<>(props, new StringDeserializer(), new StringDeserializer());
            final KafkaConsumer<String, String> consumer = c;
            c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                    if (parts.isEmpty()) {
                        return;
                    }
                    rebalanceCallbacks.incrementAndGet();
                    revocations.incrementAndGet();
                    event("revoked " + sorted(parts));
                    commit(consumer, parts);
                    pending.keySet().removeAll(parts);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                    if (parts.isEmpty()) {
                        return;
                    }
                    rebalanceCallbacks.incrementAndGet();
                    event("assigned " + sorted(parts));
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> parts) {
                    if (parts.isEmpty()) {
                        return;
                    }
                    rebalanceCallbacks.incrementAndGet();
                    event("lost " + sorted(parts));
                    pending.keySet().removeAll(parts);
                }
            });
            while (!stopRequested) {
                ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(100));
                for (ConsumerRecord<String, String> r : recs) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    sink.consumed(tp, r.offset(), r.value());
                    pending.put(tp, r.offset() + 1);
                }
                if (!recs.isEmpty() && pauseMs > 0) {
                    Thread.sleep(pauseMs);
                }
                Set<TopicPartition> owned = c.assignment();
                pending.keySet().retainAll(owned);
                if (!pending.isEmpty()) {
                    commit(c, new ArrayList<>(pending.keySet()));
                }
                assignment = Set.copyOf(owned);
                generation = c.groupMetadata().generationId();
                memberId = c.groupMetadata().memberId();
                sink.state(assignment, generation, memberId);
            }
            pending.keySet().retainAll(c.assignment());
            if (!pending.isEmpty()) {
                commit(c, new ArrayList<>(pending.keySet()));
            }
        } catch (Throwable t) {
            error = t;
            event("error " + t);
        } finally {
            if (c != null) {
                try {
                    c.close(CloseOptions.timeout(Duration.ofSeconds(10)));
                } catch (Throwable t) {
                    if (error == null) {
                        error = t;
                    }
                    event("error on close " + t);
                }
            }
            finished = true;
        }
    }

    private void commit(KafkaConsumer<String, String> c, Collection<TopicPartition> which) {
        Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
        for (TopicPartition tp : which) {
            Long next = pending.get(tp);
            if (next != null) {
                offs.put(tp, new OffsetAndMetadata(next));
            }
        }
        if (offs.isEmpty()) {
            return;
        }
        try {
            c.commitSync(offs, Duration.ofSeconds(10));
            sink.committed(offs);
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) {
                pending.remove(e.getKey(), e.getValue().offset());
            }
        } catch (CommitFailedException | RebalanceInProgressException | RetriableException e) {
            commitFailures.incrementAndGet();
            event("commit failed (" + e.getClass().getSimpleName() + ")");
        }
    }

    static List<Integer> sorted(Collection<TopicPartition> parts) {
        Set<Integer> s = new TreeSet<>();
        for (TopicPartition tp : parts) {
            s.add(tp.partition());
        }
        return new ArrayList<>(s);
    }

    static Set<Integer> partitions(Collection<TopicPartition> parts) {
        return new HashSet<>(sorted(parts));
    }
}
