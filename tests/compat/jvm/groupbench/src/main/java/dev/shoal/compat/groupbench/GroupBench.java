package dev.shoal.compat.groupbench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

import dev.shoal.compat.harness.Checks;
import dev.shoal.compat.harness.Clients;
import dev.shoal.compat.harness.Suite;

/**
 * How long a consumer group takes to settle, for each group protocol ({@code classic} and
 * {@code consumer}, KIP-848), measured with the Java client. A benchmark: it prints numbers and
 * fails only when a group never settles.
 *
 * <p>Each round, on a fresh group over a topic of {@code bench.partitions} partitions (default
 * 6):
 * <ol>
 * <li><b>join</b>: {@code bench.members} consumers (default 3), one thread each, subscribe at
 * once; the time from the first subscribe until the group is settled;</li>
 * <li><b>add</b>: one more consumer subscribes; the time from its subscribe until settled;</li>
 * <li><b>leave</b>: the oldest member closes (LeaveGroup, or a heartbeat with epoch -1); the
 * time from the start of its close until the others are settled.</li>
 * </ol>
 * {@code bench.warmupRounds} rounds (default 1) come first and are not counted: the first group
 * of a fresh server pays for one-time work (Kafka creates {@code __consumer_offsets} then).
 *
 * <p>Settled means: the members' assignments, as their rebalance callbacks and {@code assignment()}
 * report them, are pairwise disjoint, together cover every partition, and differ in size by
 * at most one (what both protocols' default assignors end with), with every member owning
 * some. Members poll every 20 ms; the settled state is sampled every 5 ms.
 *
 * <p>Output: one line per round, then per protocol
 * {@code RESULT LABEL protocol=P members=N partitions=K rounds=R join_p50_ms=.. add_p50_ms=.. leave_p50_ms=..}
 * (the median of the rounds; min and max beside it). Client settings are the client's defaults
 * (classic: heartbeat.interval.ms 3000, session.timeout.ms 45000, the range assignor first;
 * consumer: the server's heartbeat interval and assignor) unless {@code bench.consumerProps}
 * adds {@code k=v,k=v}.
 *
 * <p>System properties: {@code bench.members}, {@code bench.partitions}, {@code bench.rounds}
 * (default 5), {@code bench.warmupRounds}, {@code bench.protocols} (default {@code classic,consumer}),
 * {@code bench.settleTimeoutSeconds} (default 120), {@code bench.consumerProps}.
 */
public final class GroupBench extends Suite {

    static final int MEMBERS = Integer.getInteger("bench.members", 3);
    static final int PARTITIONS = Integer.getInteger("bench.partitions", 6);
    static final int ROUNDS = Integer.getInteger("bench.rounds", 5);
    static final int WARMUP = Integer.getInteger("bench.warmupRounds", 1);
    static final List<String> PROTOCOLS = List.of(System.getProperty("bench.protocols", "classic,consumer").split(","));
    static final Duration SETTLE_TIMEOUT = Duration.ofSeconds(Long.getLong("bench.settleTimeoutSeconds", 120));
    static final String EXTRA_PROPS = System.getProperty("bench.consumerProps", "");

    final String label;

    GroupBench(String bootstrap, String label) {
        super("java-groupbench", "shoal-groupbench", bootstrap);
        this.label = label;
    }

    @Override
    protected void checks() throws Exception {
        header("label " + label + ", " + MEMBERS + " members, " + PARTITIONS + " partitions, " + ROUNDS + " rounds");
        for (String protocol : PROTOCOLS) {
            check(protocol, () -> measure(protocol));
        }
    }

    /** All rounds of one protocol, then its RESULT line. */
    void measure(String protocol) throws Exception {
        String topic = name("t-" + protocol);
        createTopic(topic, PARTITIONS);
        long[] join = new long[ROUNDS];
        long[] add = new long[ROUNDS];
        long[] leave = new long[ROUNDS];
        for (int i = -WARMUP; i < ROUNDS; i++) {
            int r = Math.max(i, 0);
            String group = newGroup(protocol + "-" + (i + WARMUP));
            List<Member> members = new ArrayList<>();
            try {
                long t0 = System.nanoTime();
                for (int m = 0; m < MEMBERS; m++) {
                    members.add(new Member(props(protocol, group, "m" + m), topic).start());
                }
                join[r] = waitSettled(members, t0, "join");
                Member extra = new Member(props(protocol, group, "m" + MEMBERS), topic);
                t0 = System.nanoTime();
                members.add(extra.start());
                add[r] = waitSettled(members, t0, "add");
                Member oldest = members.remove(0);
                t0 = System.nanoTime();
                oldest.closing = true;
                leave[r] = waitSettled(members, t0, "leave");
                oldest.join();
            } finally {
                for (Member m : members) {
                    m.closing = true;
                }
                for (Member m : members) {
                    m.join();
                }
            }
            info("%s %s: join %d ms, add %d ms, leave %d ms", protocol, i < 0 ? "warm-up round" : "round " + (r + 1),
                    join[r], add[r], leave[r]);
        }
        System.out.printf("RESULT %s protocol=%s members=%d partitions=%d rounds=%d join_p50_ms=%d add_p50_ms=%d "
                + "leave_p50_ms=%d join_ms=%s add_ms=%s leave_ms=%s%n", label, protocol, MEMBERS, PARTITIONS, ROUNDS,
                p50(join), p50(add), p50(leave), range(join), range(add), range(leave));
    }

    Properties props(String protocol, String group, String member) {
        Properties p = Clients.consumer(bootstrap, "groupbench-" + member);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        for (String kv : EXTRA_PROPS.split(",")) {
            int eq = kv.indexOf('=');
            if (eq > 0) {
                p.put(kv.substring(0, eq).trim(), kv.substring(eq + 1).trim());
            }
        }
        return p;
    }

    /** Milliseconds from t0 until the members are settled; throws after the settle timeout. */
    static long waitSettled(List<Member> members, long t0, String what) throws Exception {
        long deadline = t0 + SETTLE_TIMEOUT.toNanos();
        while (!settled(members)) {
            for (Member m : members) {
                if (m.error != null) {
                    throw new AssertionError(what + ": member " + m.name + " failed: " + Checks.chain(m.error));
                }
            }
            if (System.nanoTime() > deadline) {
                StringBuilder sb = new StringBuilder();
                for (Member m : members) {
                    sb.append(' ').append(m.name).append('=').append(sorted(m.owned));
                }
                throw new AssertionError(what + ": not settled after " + SETTLE_TIMEOUT.toSeconds() + " s:" + sb);
            }
            Thread.sleep(5);
        }
        return (System.nanoTime() - t0) / 1_000_000;
    }

    static boolean settled(List<Member> members) {
        Set<Integer> seen = new HashSet<>();
        int min = Integer.MAX_VALUE;
        int max = 0;
        for (Member m : members) {
            Set<TopicPartition> owned = m.owned;
            for (TopicPartition tp : owned) {
                if (!seen.add(tp.partition())) {
                    return false;
                }
            }
            min = Math.min(min, owned.size());
            max = Math.max(max, owned.size());
        }
        return seen.size() == PARTITIONS && min > 0 && max - min <= 1;
    }

    static long p50(long[] xs) {
        long[] s = xs.clone();
        java.util.Arrays.sort(s);
        return s[(s.length - 1) / 2];
    }

    static String range(long[] xs) {
        long[] s = xs.clone();
        java.util.Arrays.sort(s);
        return s[0] + ".." + s[s.length - 1];
    }

    static List<Integer> sorted(Collection<TopicPartition> parts) {
        List<Integer> out = new ArrayList<>();
        for (TopicPartition tp : parts) {
            out.add(tp.partition());
        }
        out.sort(null);
        return out;
    }

    /**
     * One consumer on its own thread: subscribes, polls every 20 ms and publishes what it owns
     * (updated in the rebalance callbacks as they run, and from {@code assignment()} after each
     * poll); closes when {@link #closing} is set.
     */
    static final class Member {
        final String name;
        final String topic;
        final Properties props;
        volatile Set<TopicPartition> owned = Set.of();
        volatile boolean closing;
        volatile Throwable error;
        private Thread thread;

        Member(Properties props, String topic) {
            this.name = props.getProperty(ConsumerConfig.CLIENT_ID_CONFIG);
            this.topic = topic;
            this.props = props;
        }

        Member start() {
            thread = new Thread(this::run, name);
            thread.setDaemon(true);
            thread.start();
            return this;
        }

        void join() throws InterruptedException {
            thread.join(30_000);
        }

        void run() {
            KafkaConsumer<byte[], byte[]> c = null;
            try {
                c = new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer());
                c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                        remove(parts);
                    }

                    @Override
                    public void onPartitionsLost(Collection<TopicPartition> parts) {
                        remove(parts);
                    }

                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                        Set<TopicPartition> s = new HashSet<>(owned);
                        s.addAll(parts);
                        owned = Set.copyOf(s);
                    }
                });
                while (!closing) {
                    c.poll(Duration.ofMillis(20));
                    owned = Set.copyOf(c.assignment());
                }
            } catch (Throwable t) {
                error = t;
            } finally {
                if (c != null) {
                    try {
                        c.close(CloseOptions.timeout(Duration.ofSeconds(20)));
                    } catch (Throwable t) {
                        error = error == null ? t : error;
                    }
                }
            }
        }

        private void remove(Collection<TopicPartition> parts) {
            Set<TopicPartition> s = new HashSet<>(owned);
            s.removeAll(parts);
            owned = Set.copyOf(s);
        }
    }

    public static void main(String[] args) {
        Checks.main("java-groupbench", "GroupBench BOOTSTRAP LABEL", 2, args, 1800,
                a -> new GroupBench(a[0], a[1]));
    }
}
