package dev.shoal.compat.groups;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

import dev.shoal.compat.harness.Checks;
import dev.shoal.compat.harness.Clients;
import dev.shoal.compat.harness.Suite;

/**
 * Consumer-group compatibility checks of a Kafka-protocol server with the official Java client
 * (classic group protocol: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
 * OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete).
 *
 * <p>Usage: {@code java dev.shoal.compat.groups.GroupsCompat BOOTSTRAP}. Assumes topic
 * auto-creation is off. Every check is one pass or one fail; the last
 * line printed is {@code java-groups: N passed, M failed} and the exit code is 1 when anything
 * failed. {@code -Dcompat.only=REGEX} runs only the checks whose name matches.
 */
public final class GroupsCompat extends Suite {

    /** Upper bound for each wait for a group to settle or records to arrive. */
    static final Duration WAIT = Duration.ofSeconds(Long.getLong("compat.waitSeconds", 60));
    static final long GLOBAL_TIMEOUT_SECONDS = Long.getLong("compat.globalTimeoutSeconds", 600);
    static final int SESSION_MS = Integer.getInteger("compat.sessionTimeoutMs", 6000);
    static final int STATIC_SESSION_MS = Integer.getInteger("compat.staticSessionTimeoutMs", 10000);
    static final int HEARTBEAT_MS = Integer.getInteger("compat.heartbeatIntervalMs", 1000);
    static final int RECORDS = Integer.getInteger("compat.records", 3000);
    static final int PARTITIONS = 6;
    /** Members of a, b and c consume at most this many records per poll and pause after each... */
    static final int SLOW_POLL_RECORDS = 20;
    /** ...this long, so a member can leave or be killed while it is consuming. */
    static final int SLOW_POLL_PAUSE_MS = 50;
    /** Every in-process member and worker JVM started, so a failed check cannot leak them. */
    final List<GroupMember> members = new ArrayList<>();
    final List<WorkerProc> workers = new ArrayList<>();

    GroupsCompat(String bootstrap) {
        super("java-groups", "shoal-groups", bootstrap);
    }

    // ------------------------------------------------------------------ harness

    @Override
    protected void afterCheck() {
        stopEverything();
    }

    void stopEverything() {
        for (GroupMember m : members) {
            m.stopQuietly();
        }
        members.clear();
        for (WorkerProc w : workers) {
            w.stopQuietly();
        }
        workers.clear();
    }

    // ------------------------------------------------------------------ clients

    /** Consumer settings shared by every group member (also the worker JVMs). */
    static Properties consumerProps(String bootstrap, String group, String clientId, Map<String, Object> extra) {
        Properties p = Clients.consumer(bootstrap, clientId);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        // The classic protocol, said outright: the 4.x default, but the KIP-848 protocol
        // ("consumer") has its own suite, ../../consumer-protocol.
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, Integer.toString(SESSION_MS));
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, Integer.toString(HEARTBEAT_MS));
        // Also the rebalance timeout: how long the coordinator waits for members to rejoin.
        p.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "30000");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "200");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100");
        p.putAll(extra);
        return p;
    }

    KafkaProducer<String, String> producer() {
        Properties p = Clients.producer(bootstrap, "shoal-java-groups-producer");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        // Idempotence at the client's default (on).
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    /** Produces keyed records {@code from..to-1} (key key-I, value v-RUN-I) and notes where they went. */
    void produceKeyed(String topic, Ledger ledger, int from, int to) throws Exception {
        List<ProducerRecord<String, String>> recs = new ArrayList<>();
        for (int i = from; i < to; i++) {
            recs.add(new ProducerRecord<>(topic, "key-" + i, "v-" + runId + "-" + i));
        }
        List<RecordMetadata> mds;
        try (KafkaProducer<String, String> p = producer()) {
            mds = Clients.sendAll(p, recs);
        }
        for (int i = 0; i < mds.size(); i++) {
            RecordMetadata md = mds.get(i);
            ledger.produced(new TopicPartition(topic, md.partition()), md.offset(), recs.get(i).value());
        }
    }

    /** Produces {@code n} unkeyed records to one partition. */
    void produceTo(String topic, int partition, int n) throws Exception {
        List<ProducerRecord<String, String>> recs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            recs.add(new ProducerRecord<>(topic, partition, null, "p" + partition + "-" + i));
        }
        try (KafkaProducer<String, String> p = producer()) {
            Clients.sendAll(p, recs);
        }
    }

    Map<TopicPartition, Long> endOffsets(String topic, int partitions) throws Exception {
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        for (int i = 0; i < partitions; i++) {
            req.put(new TopicPartition(topic, i), OffsetSpec.latest());
        }
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> r = get(admin.listOffsets(req).all());
        Map<TopicPartition, Long> out = new TreeMap<>(Comparator.TP);
        r.forEach((tp, info) -> out.put(tp, info.offset()));
        return out;
    }

    Map<TopicPartition, Long> committedOffsets(String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> m =
                get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        Map<TopicPartition, Long> out = new TreeMap<>(Comparator.TP);
        m.forEach((tp, om) -> {
            if (om != null) {
                out.put(tp, om.offset());
            }
        });
        return out;
    }

    static final class Comparator {
        static final java.util.Comparator<TopicPartition> TP =
                java.util.Comparator.comparing(TopicPartition::topic).thenComparingInt(TopicPartition::partition);
    }

    ConsumerGroupDescription describe(String group) throws Exception {
        return get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
    }

    /** Partition numbers per member (consumer id) from describeConsumerGroups. */
    static Map<String, Set<Integer>> describedAssignments(ConsumerGroupDescription d) {
        Map<String, Set<Integer>> out = new TreeMap<>();
        for (MemberDescription m : d.members()) {
            out.put(m.consumerId(), GroupMember.partitions(m.assignment().topicPartitions()));
        }
        return out;
    }

    GroupMember member(String name, String topic, String group, Ledger ledger, Map<String, Object> extra) {
        Properties p = consumerProps(bootstrap, group, name, extra);
        GroupMember.Sink sink = new GroupMember.Sink() {
            @Override
            public void consumed(TopicPartition tp, long offset, String value) {
                ledger.consumed(name, tp, offset, value);
            }

            @Override
            public void committed(Map<TopicPartition, OffsetAndMetadata> offsets) {
                ledger.committed(offsets);
            }

            @Override
            public void state(Set<TopicPartition> assignment, int generation, String memberId) {
            }

            @Override
            public void event(String what) {
                if (Boolean.getBoolean("compat.verbose")) {
                    System.out.println("     [" + name + "] " + what);
                }
            }
        };
        GroupMember m = new GroupMember(name, topic, p, sink);
        members.add(m);
        return m.start();
    }

    /**
     * Waits until the group is Stable with exactly these members, every member's own view of its
     * assignment agrees with describeConsumerGroups, the assignments are disjoint and cover all
     * partitions, and each member has between min and max partitions.
     */
    void awaitBalanced(String group, int partitions, List<? extends Assigned> ms) throws Exception {
        eventually(WAIT, () -> {
            for (Assigned m : ms) {
                require(m.failure() == null, "member %s failed: %s", m.memberName(), m.failure());
            }
            Set<Integer> union = new HashSet<>();
            int total = 0;
            int min = partitions / ms.size();
            int max = (partitions + ms.size() - 1) / ms.size();
            Map<String, Set<Integer>> local = new TreeMap<>();
            for (Assigned m : ms) {
                Set<Integer> a = m.partitionSet();
                local.put(m.memberName(), a);
                require(a.size() >= min && a.size() <= max, "member %s has partitions %s (want %d..%d of %d)",
                        m.memberName(), a, min, max, partitions);
                union.addAll(a);
                total += a.size();
            }
            require(union.size() == partitions && total == partitions,
                    "assignments %s do not split the %d partitions", local, partitions);
            ConsumerGroupDescription d = describe(group);
            require(d.groupState() == GroupState.STABLE, "group state %s, want STABLE", d.groupState());
            require(d.members().size() == ms.size(), "describe shows %d members, want %d: %s",
                    d.members().size(), ms.size(), describedAssignments(d));
            Map<String, Set<Integer>> described = describedAssignments(d);
            for (Assigned m : ms) {
                Set<Integer> viaAdmin = described.get(m.memberIdValue());
                require(viaAdmin != null, "member %s (%s) missing from describe %s", m.memberName(),
                        m.memberIdValue(), described.keySet());
                require(viaAdmin.equals(m.partitionSet()), "member %s: describe says %s, consumer says %s",
                        m.memberName(), viaAdmin, m.partitionSet());
            }
        });
    }

    /** Common view of an in-process member and a worker JVM. */
    interface Assigned {
        String memberName();

        Set<Integer> partitionSet();

        String memberIdValue();

        Object failure();
    }

    static Assigned view(GroupMember m) {
        return new Assigned() {
            public String memberName() {
                return m.name;
            }

            public Set<Integer> partitionSet() {
                return GroupMember.partitions(m.assignment);
            }

            public String memberIdValue() {
                return m.memberId;
            }

            public Object failure() {
                return m.error;
            }
        };
    }

    /** Waits until every record was consumed and the group's committed offsets equal the end offsets. */
    void awaitAllConsumedAndCommitted(String group, String topic, int partitions, Ledger ledger) throws Exception {
        eventually(WAIT, () -> {
            require(ledger.missing() == 0, "%d of %d records not consumed yet", ledger.missing(),
                    ledger.producedCount());
            Map<TopicPartition, Long> end = endOffsets(topic, partitions);
            Map<TopicPartition, Long> committed = committedOffsets(group);
            require(committed.equals(end), "committed offsets %s, end offsets %s", committed, end);
        });
    }

    void awaitEmpty(String group) throws Exception {
        eventually(WAIT, () -> {
            ConsumerGroupDescription d = describe(group);
            require(d.groupState() == GroupState.EMPTY && d.members().isEmpty(),
                    "group state %s with %d members, want EMPTY with none", d.groupState(), d.members().size());
        });
    }

    // ------------------------------------------------------------------ a + b: a member leaves

    void leaveScenario(String label, String assignor, boolean cooperative) throws Exception {
        String topic = name(label);
        String group = newGroup(label);
        createTopic(topic, PARTITIONS);
        Ledger ledger = new Ledger();
        produceKeyed(topic, ledger, 0, RECORDS / 2);
        Map<String, Object> extra = Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor,
                ConsumerConfig.MAX_POLL_RECORDS_CONFIG, Integer.toString(SLOW_POLL_RECORDS));
        GroupMember m1 = member("c1", topic, group, ledger, extra);
        GroupMember m2 = member("c2", topic, group, ledger, extra);
        GroupMember m3 = member("c3", topic, group, ledger, extra);
        for (GroupMember m : List.of(m1, m2, m3)) {
            m.pauseMs = SLOW_POLL_PAUSE_MS;
        }
        awaitBalanced(group, PARTITIONS, List.of(view(m1), view(m2), view(m3)));
        eventually(WAIT, () -> require(ledger.missing() == 0, "%d of %d records of the first half not consumed",
                ledger.missing(), ledger.producedCount()));
        Set<Integer> a1 = GroupMember.partitions(m1.assignment);
        Set<Integer> a2 = GroupMember.partitions(m2.assignment);
        Set<Integer> a3 = GroupMember.partitions(m3.assignment);
        int gen1 = m1.generation;
        int rev1 = m1.revocations.get();
        int rev2 = m2.revocations.get();
        info("3 members: c1=%s c2=%s c3=%s (generation %d)", a1, a2, a3, gen1);

        // Second half; c3 leaves while it is consuming it.
        int before = ledger.consumedBy("c3");
        produceKeyed(topic, ledger, RECORDS / 2, RECORDS);
        eventually(WAIT, () -> require(ledger.consumedBy("c3") > before, "c3 consumed nothing of the second half"));
        m3.stop(Duration.ofSeconds(30)); // commits what it processed, then close() sends LeaveGroup
        require(m3.error == null, "c3 failed: %s", m3.error);
        info("c3 left after consuming %d records of the second half", ledger.consumedBy("c3") - before);

        awaitBalanced(group, PARTITIONS, List.of(view(m1), view(m2)));
        Set<Integer> b1 = GroupMember.partitions(m1.assignment);
        Set<Integer> b2 = GroupMember.partitions(m2.assignment);
        info("after c3 left: c1=%s c2=%s (generation %d)", b1, b2, m1.generation);
        require(m1.generation > gen1, "generation did not advance after c3 left (%d -> %d)", gen1, m1.generation);
        Set<Integer> takenOver = new HashSet<>(b1);
        takenOver.addAll(b2);
        require(takenOver.containsAll(a3), "c3's partitions %s were not taken over (c1=%s c2=%s)", a3, b1, b2);
        if (cooperative) {
            // Incremental rebalancing: survivors keep what they had and are never revoked.
            require(b1.containsAll(a1) && b2.containsAll(a2), "survivors lost partitions: c1 %s -> %s, c2 %s -> %s",
                    a1, b1, a2, b2);
            require(m1.revocations.get() == rev1 && m2.revocations.get() == rev2,
                    "survivors had partitions revoked in a cooperative rebalance: c1 %s, c2 %s", m1.events, m2.events);
        } else {
            // Eager: every survivor gives up all its partitions before rejoining.
            require(m1.revocations.get() > rev1 && m2.revocations.get() > rev2,
                    "eager rebalance without revocation: c1 %s, c2 %s", m1.events, m2.events);
        }
        awaitAllConsumedAndCommitted(group, topic, PARTITIONS, ledger);
        ledger.verify();
        info("%d records consumed, %d duplicates, commit failures c1=%d c2=%d c3=%d", ledger.producedCount(),
                ledger.duplicates(), m1.commitFailures.get(), m2.commitFailures.get(), m3.commitFailures.get());
        m1.stop(Duration.ofSeconds(30));
        m2.stop(Duration.ofSeconds(30));
        require(m1.error == null && m2.error == null, "member failed: c1 %s, c2 %s", m1.error, m2.error);
        awaitEmpty(group);
    }

    // ------------------------------------------------------------------ c: a member is killed

    /** A group member in a child JVM (see {@link GroupWorker}). */
    final class WorkerProc implements Assigned {
        final String name;
        final Process proc;
        final Writer stdin;
        final Thread reader;
        volatile Set<Integer> partitions = Set.of();
        volatile int generation = -1;
        volatile String memberId = "";
        volatile String failure;
        volatile boolean closed;

        WorkerProc(String name, String topic, String group, Ledger ledger) throws IOException {
            this.name = name;
            Path java = Paths.get(System.getProperty("java.home"), "bin", "java");
            List<String> cmd = new ArrayList<>(List.of(java.toString(), "-Xmx256m", "-XX:TieredStopAtLevel=1",
                    "-XX:+UseSerialGC",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel="
                            + System.getProperty("org.slf4j.simpleLogger.defaultLogLevel", "error"),
                    "-Dcompat.sessionTimeoutMs=" + SESSION_MS,
                    "-Dcompat.heartbeatIntervalMs=" + HEARTBEAT_MS,
                    "-Dcompat.workerMaxSeconds=" + Math.max(120, GLOBAL_TIMEOUT_SECONDS),
                    "-Dcompat.maxPollRecords=" + SLOW_POLL_RECORDS,
                    "-Dcompat.pollPauseMs=" + SLOW_POLL_PAUSE_MS,
                    "-cp", System.getProperty("java.class.path"),
                    GroupWorker.class.getName(), bootstrap, topic, group, name));
            ProcessBuilder pb = new ProcessBuilder(cmd);
            pb.redirectError(ProcessBuilder.Redirect.INHERIT);
            proc = pb.start();
            stdin = new OutputStreamWriter(proc.getOutputStream(), StandardCharsets.UTF_8);
            reader = new Thread(() -> read(topic, ledger), "worker-" + name);
            reader.setDaemon(true);
            reader.start();
        }

        private void read(String topic, Ledger ledger) {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(proc.getInputStream(),
                    StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    String[] f = line.split(" ", 4);
                    switch (f[0]) {
                        case "REC" -> ledger.consumed(name, new TopicPartition(topic, Integer.parseInt(f[1])),
                                Long.parseLong(f[2]), f[3]);
                        case "COMMIT" -> {
                            Map<TopicPartition, OffsetAndMetadata> m = new HashMap<>();
                            for (String kv : f[1].split(",")) {
                                String[] p = kv.split("=");
                                m.put(new TopicPartition(topic, Integer.parseInt(p[0])),
                                        new OffsetAndMetadata(Long.parseLong(p[1])));
                            }
                            ledger.committed(m);
                        }
                        case "STATE" -> {
                            Set<Integer> s = new HashSet<>();
                            if (!f[2].equals("-")) {
                                for (String p : f[2].split(",")) {
                                    s.add(Integer.parseInt(p));
                                }
                            }
                            generation = Integer.parseInt(f[1]);
                            memberId = f[3].equals("-") ? "" : f[3];
                            partitions = Set.copyOf(s);
                        }
                        case "EVENT" -> {
                            if (Boolean.getBoolean("compat.verbose")) {
                                System.out.println("     [" + name + "] " + line.substring(6));
                            }
                        }
                        case "FAILED" -> failure = line.substring(7);
                        case "CLOSED" -> closed = true;
                        default -> failure = "unexpected output: " + line;
                    }
                }
            } catch (Exception e) {
                if (failure == null && proc.isAlive()) {
                    failure = "reading worker output: " + e;
                }
            }
        }

        void kill() throws InterruptedException {
            proc.destroyForcibly(); // SIGKILL on Unix: no LeaveGroup, no commit, no goodbye
            require(proc.waitFor(10, TimeUnit.SECONDS), "worker %s survived SIGKILL", name);
        }

        void stop(Duration timeout) throws Exception {
            try {
                stdin.write("STOP\n");
                stdin.flush();
            } catch (IOException ignored) {
                // already gone
            }
            if (!proc.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                proc.destroyForcibly();
                throw new AssertionError("worker " + name + " did not stop within " + timeout.toSeconds() + " s");
            }
            reader.join(5000);
            require(proc.exitValue() == 0 && closed, "worker %s exited with %d (%s)", name, proc.exitValue(),
                    failure);
        }

        void stopQuietly() {
            if (!proc.isAlive()) {
                return;
            }
            try {
                stop(Duration.ofSeconds(20));
            } catch (Throwable t) {
                proc.destroyForcibly();
            }
        }

        public String memberName() {
            return name;
        }

        public Set<Integer> partitionSet() {
            return partitions;
        }

        public String memberIdValue() {
            return memberId;
        }

        public Object failure() {
            return failure;
        }
    }

    void killScenario() throws Exception {
        String topic = name("kill");
        String group = newGroup("kill");
        createTopic(topic, PARTITIONS);
        Ledger ledger = new Ledger();
        produceKeyed(topic, ledger, 0, RECORDS / 2);
        // Default partition.assignment.strategy (range, cooperative-sticky): eager range in practice.
        WorkerProc w1 = new WorkerProc("w1", topic, group, ledger);
        workers.add(w1);
        WorkerProc w2 = new WorkerProc("w2", topic, group, ledger);
        workers.add(w2);
        WorkerProc w3 = new WorkerProc("w3", topic, group, ledger);
        workers.add(w3);
        awaitBalanced(group, PARTITIONS, List.of(w1, w2, w3));
        eventually(WAIT, () -> require(ledger.missing() == 0, "%d of %d records of the first half not consumed",
                ledger.missing(), ledger.producedCount()));
        Set<Integer> a3 = w3.partitions;
        int gen = w1.generation;
        info("3 worker JVMs: w1=%s w2=%s w3=%s (generation %d)", w1.partitions, w2.partitions, a3, gen);

        // Second half; w3 is killed while it is consuming it (with processed but uncommitted records).
        int before = ledger.consumedBy("w3");
        produceKeyed(topic, ledger, RECORDS / 2, RECORDS);
        eventually(WAIT, () -> require(ledger.consumedBy("w3") > before, "w3 consumed nothing of the second half"));
        long t0 = System.nanoTime();
        w3.kill();
        info("w3 killed after consuming %d records of the second half", ledger.consumedBy("w3") - before);
        // The coordinator only notices after session.timeout.ms; allow that on top of the usual wait.
        eventually(WAIT.plusMillis(SESSION_MS), () -> {
            require(w1.generation > gen && w2.generation > gen, "no new generation yet (w1 %d, w2 %d, was %d)",
                    w1.generation, w2.generation, gen);
            ConsumerGroupDescription d = describe(group);
            require(d.members().size() == 2, "describe shows %d members, want 2", d.members().size());
        });
        long took = (System.nanoTime() - t0) / 1_000_000;
        awaitBalanced(group, PARTITIONS, List.of(w1, w2));
        info("w3 killed; after %d ms the group has w1=%s w2=%s (generation %d; session.timeout.ms=%d)",
                took, w1.partitions, w2.partitions, w1.generation, SESSION_MS);
        Set<Integer> takenOver = new HashSet<>(w1.partitions);
        takenOver.addAll(w2.partitions);
        require(takenOver.containsAll(a3), "w3's partitions %s were not taken over", a3);
        awaitAllConsumedAndCommitted(group, topic, PARTITIONS, ledger);
        ledger.verify();
        info("%d records consumed, %d duplicates", ledger.producedCount(), ledger.duplicates());
        w1.stop(Duration.ofSeconds(30));
        w2.stop(Duration.ofSeconds(30));
        awaitEmpty(group);
    }

    // ------------------------------------------------------------------ d: static membership

    void staticMembershipScenario() throws Exception {
        String topic = name("static");
        String group = newGroup("static");
        createTopic(topic, PARTITIONS);
        Ledger ledger = new Ledger();
        produceKeyed(topic, ledger, 0, RECORDS / 2);
        java.util.function.Function<String, Map<String, Object>> staticProps = inst -> Map.of(
                ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, group + "-" + inst,
                ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, Integer.toString(STATIC_SESSION_MS),
                ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
        GroupMember s1 = member("s1", topic, group, ledger, staticProps.apply("s1"));
        GroupMember s2 = member("s2", topic, group, ledger, staticProps.apply("s2"));
        GroupMember s3 = member("s3", topic, group, ledger, staticProps.apply("s3"));
        awaitBalanced(group, PARTITIONS, List.of(view(s1), view(s2), view(s3)));
        eventually(WAIT, () -> require(ledger.missing() == 0, "%d of %d records of the first half not consumed",
                ledger.missing(), ledger.producedCount()));
        ConsumerGroupDescription d0 = describe(group);
        Set<String> instances = d0.members().stream().map(m -> m.groupInstanceId().orElse("<none>"))
                .collect(Collectors.toCollection(java.util.TreeSet::new));
        require(instances.equals(Set.of(group + "-s1", group + "-s2", group + "-s3")),
                "describe shows group.instance.ids %s", instances);
        Set<Integer> a1 = GroupMember.partitions(s1.assignment);
        Set<Integer> a2 = GroupMember.partitions(s2.assignment);
        Set<Integer> a3 = GroupMember.partitions(s3.assignment);
        int gen = s1.generation;
        int cb1 = s1.rebalanceCallbacks.get();
        int cb2 = s2.rebalanceCallbacks.get();
        String oldId3 = s3.memberId;
        info("static members: s1=%s s2=%s s3=%s (generation %d)", a1, a2, a3, gen);

        long t0 = System.nanoTime();
        s3.stop(Duration.ofSeconds(30)); // a static member's close() sends no LeaveGroup
        require(s3.error == null, "s3 failed: %s", s3.error);
        ConsumerGroupDescription d1 = describe(group);
        require(d1.members().size() == 3 && d1.groupState() == GroupState.STABLE,
                "after s3 closed (without leaving) the group is %s with %d members, want STABLE with 3",
                d1.groupState(), d1.members().size());
        GroupMember s3b = member("s3-restarted", topic, group, ledger, staticProps.apply("s3"));
        eventually(WAIT, () -> {
            require(s3b.error == null, "restarted s3 failed: %s", s3b.error);
            require(!s3b.assignment.isEmpty(), "restarted s3 has no assignment yet");
        });
        long took = (System.nanoTime() - t0) / 1_000_000;
        require(took < STATIC_SESSION_MS, "restart took %d ms, longer than session.timeout.ms", took);
        Set<Integer> b3 = GroupMember.partitions(s3b.assignment);
        info("s3 restarted after %d ms: s3=%s generation %d, member id %s -> %s", took, b3, s3b.generation,
                oldId3, s3b.memberId);
        require(b3.equals(a3), "restarted s3 got %s, had %s", b3, a3);
        produceKeyed(topic, ledger, RECORDS / 2, RECORDS);
        awaitAllConsumedAndCommitted(group, topic, PARTITIONS, ledger);
        ledger.verify();
        require(s1.rebalanceCallbacks.get() == cb1 && s2.rebalanceCallbacks.get() == cb2,
                "the restart rebalanced the other members (generation %d -> %d): s1 %s, s2 %s", gen,
                s1.generation, s1.events, s2.events);
        require(s1.generation == gen && s2.generation == gen && s3b.generation == gen,
                "generation changed: s1 %d, s2 %d, s3 %d, was %d", s1.generation, s2.generation, s3b.generation, gen);
        require(GroupMember.partitions(s1.assignment).equals(a1) && GroupMember.partitions(s2.assignment).equals(a2),
                "the other members' partitions changed");
        ConsumerGroupDescription d2 = describe(group);
        require(d2.groupState() == GroupState.STABLE && d2.members().size() == 3,
                "group %s with %d members after the restart", d2.groupState(), d2.members().size());
        info("%d records consumed, %d duplicates", ledger.producedCount(), ledger.duplicates());

        // Static members do not leave when closed; the admin client removes them (LeaveGroup by instance id).
        s1.stop(Duration.ofSeconds(30));
        s2.stop(Duration.ofSeconds(30));
        s3b.stop(Duration.ofSeconds(30));
        ConsumerGroupDescription d3 = describe(group);
        require(d3.members().size() == 3, "after closing all static members describe shows %d members, want 3",
                d3.members().size());
        get(admin.removeMembersFromConsumerGroup(group, new RemoveMembersFromConsumerGroupOptions()).all());
        awaitEmpty(group);
    }

    // ------------------------------------------------------------------ e: admin API

    void adminScenario() {
        String topic = name("admin");
        String group = newGroup("admin");
        String fresh = newGroup("admin-fresh");
        final boolean[] ready = {false};
        final Ledger ledger = new Ledger();
        final List<GroupMember> ms = new ArrayList<>();

        check("admin: listGroups(consumer groups) / describeConsumerGroups of an active group", () -> {
            createTopic(topic, 3);
            produceKeyed(topic, ledger, 0, 30);
            // Keep the members running into the next checks: members.clear() is avoided by
            // not registering them with the harness until the group is deleted below.
            GroupMember a = member("e1", topic, group, ledger, Map.of());
            GroupMember b = member("e2", topic, group, ledger, Map.of());
            members.remove(a);
            members.remove(b);
            ms.add(a);
            ms.add(b);
            awaitBalanced(group, 3, List.of(view(a), view(b)));
            awaitAllConsumedAndCommitted(group, topic, 3, ledger);
            ready[0] = true;

            Collection<GroupListing> all = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all());
            GroupListing l = all.stream().filter(x -> x.groupId().equals(group)).findFirst().orElse(null);
            require(l != null, "listGroups (%d consumer groups) does not contain %s", all.size(), group);
            require(!l.isSimpleConsumerGroup(), "listed as a simple consumer group");
            require(l.groupState().isEmpty() || l.groupState().get() == GroupState.STABLE, "listed state %s", l.groupState());
            Collection<GroupListing> stable = get(admin.listGroups(
                    ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(GroupState.STABLE))).all());
            require(stable.stream().anyMatch(x -> x.groupId().equals(group)),
                    "listGroups(inGroupStates=STABLE) does not contain %s", group);
            Collection<GroupListing> empty = get(admin.listGroups(
                    ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(GroupState.EMPTY))).all());
            require(empty.stream().noneMatch(x -> x.groupId().equals(group)),
                    "listGroups(inGroupStates=EMPTY) contains the active group %s", group);

            ConsumerGroupDescription d = describe(group);
            require(d.groupId().equals(group), "describe groupId %s", d.groupId());
            require(d.groupState() == GroupState.STABLE, "state %s", d.groupState());
            require(!d.isSimpleConsumerGroup(), "described as a simple consumer group");
            require("range".equals(d.partitionAssignor()), "partitionAssignor %s, want range", d.partitionAssignor());
            require(d.coordinator() != null && d.coordinator().id() >= 0, "coordinator %s", d.coordinator());
            require(d.members().size() == 2, "%d members", d.members().size());
            Set<Integer> union = new HashSet<>();
            for (MemberDescription m : d.members()) {
                require(!m.consumerId().isEmpty(), "empty member id");
                require(m.clientId().equals("e1") || m.clientId().equals("e2"), "client id %s", m.clientId());
                require(!m.host().isEmpty(), "member %s has an empty host", m.consumerId());
                require(m.groupInstanceId().isEmpty(), "dynamic member with instance id %s", m.groupInstanceId());
                for (TopicPartition tp : m.assignment().topicPartitions()) {
                    require(tp.topic().equals(topic), "assigned %s", tp);
                    require(union.add(tp.partition()), "partition %s assigned twice", tp);
                }
            }
            require(union.equals(Set.of(0, 1, 2)), "assigned partitions %s", union);
        });

        check("admin: deleteConsumerGroups of an active group -> GroupNotEmptyException", () -> {
            require(ready[0], "group was not set up");
            expectFailure(admin.deleteConsumerGroups(List.of(group)).all(), GroupNotEmptyException.class);
        });

        check("admin: deleteConsumerGroupOffsets of a subscribed topic -> GroupSubscribedToTopicException", () -> {
            require(ready[0], "group was not set up");
            expectFailure(admin.deleteConsumerGroupOffsets(group, Set.of(new TopicPartition(topic, 0))).all(),
                    GroupSubscribedToTopicException.class);
        });

        check("admin: after the members leave: group Empty, offsets kept, deleteConsumerGroupOffsets", () -> {
            require(ready[0], "group was not set up");
            for (GroupMember m : ms) {
                m.stop(Duration.ofSeconds(30));
                require(m.error == null, "member %s failed: %s", m.name, m.error);
            }
            awaitEmpty(group);
            Map<TopicPartition, Long> end = endOffsets(topic, 3);
            require(committedOffsets(group).equals(end), "committed %s, end %s", committedOffsets(group), end);
            TopicPartition tp0 = new TopicPartition(topic, 0);
            get(admin.deleteConsumerGroupOffsets(group, Set.of(tp0)).all());
            Map<TopicPartition, Long> left = committedOffsets(group);
            Map<TopicPartition, Long> want = new TreeMap<>(Comparator.TP);
            want.putAll(end);
            want.remove(tp0);
            require(left.equals(want), "after deleting %s the offsets are %s, want %s", tp0, left, want);
        });

        check("admin: deleteConsumerGroups of an empty group, then it is gone", () -> {
            require(ready[0], "group was not set up");
            get(admin.deleteConsumerGroups(List.of(group)).all());
            Collection<GroupListing> all = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all());
            require(all.stream().noneMatch(x -> x.groupId().equals(group)), "deleted group still listed");
            require(committedOffsets(group).isEmpty(), "deleted group still has offsets %s", committedOffsets(group));
            try {
                ConsumerGroupDescription d = describe(group);
                require(d.groupState() == GroupState.DEAD && d.members().isEmpty(),
                        "deleted group described as %s with %d members", d.groupState(), d.members().size());
            } catch (ExecutionException e) {
                require(e.getCause() instanceof GroupIdNotFoundException, "describe of a deleted group: %s",
                        e.getCause());
            }
            expectFailure(admin.deleteConsumerGroups(List.of(group)).all(), GroupIdNotFoundException.class);
        });

        check("admin: alterConsumerGroupOffsets / listConsumerGroupOffsets round trip (group without members)", () -> {
            require(ready[0], "topic was not set up");
            TopicPartition tp0 = new TopicPartition(topic, 0);
            TopicPartition tp1 = new TopicPartition(topic, 1);
            require(get(admin.listConsumerGroupOffsets(fresh).partitionsToOffsetAndMetadata()).isEmpty(),
                    "unknown group has offsets");
            get(admin.alterConsumerGroupOffsets(fresh, Map.of(
                    tp0, new OffsetAndMetadata(5, "meta-a"),
                    tp1, new OffsetAndMetadata(7))).all());
            Map<TopicPartition, OffsetAndMetadata> got =
                    get(admin.listConsumerGroupOffsets(fresh).partitionsToOffsetAndMetadata());
            require(got.size() == 2, "listed %s", got);
            require(got.get(tp0).offset() == 5 && "meta-a".equals(got.get(tp0).metadata()), "tp0: %s", got.get(tp0));
            require(got.get(tp1).offset() == 7 && "".equals(got.get(tp1).metadata()), "tp1: %s", got.get(tp1));
            get(admin.alterConsumerGroupOffsets(fresh, Map.of(tp0, new OffsetAndMetadata(2))).all());
            got = get(admin.listConsumerGroupOffsets(fresh).partitionsToOffsetAndMetadata());
            require(got.get(tp0).offset() == 2 && got.get(tp1).offset() == 7, "after the second alter: %s", got);
            Collection<GroupListing> all = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all());
            require(all.stream().anyMatch(x -> x.groupId().equals(fresh)), "group %s (offsets only) not listed", fresh);
            ConsumerGroupDescription d = describe(fresh);
            require(d.groupState() == GroupState.EMPTY && d.members().isEmpty(), "described as %s with %d members",
                    d.groupState(), d.members().size());
            // A consumer of that group starts where the offsets say.
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, fresh, "e-fresh",
                    Map.of()), new StringDeserializer(), new StringDeserializer())) {
                c.assign(List.of(tp0));
                long first = -1;
                long deadline = System.nanoTime() + WAIT.toNanos();
                while (first < 0 && System.nanoTime() < deadline) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                        if (first < 0) {
                            first = r.offset();
                        }
                    }
                }
                require(first == 2, "a consumer of the group started at offset %d, want 2", first);
            }
            get(admin.deleteConsumerGroups(List.of(fresh)).all());
        });
        for (GroupMember m : ms) {
            m.stopQuietly();
        }
    }

    // ------------------------------------------------------------------ f: simple consumer (assign + group.id)

    void simpleConsumerScenario() throws Exception {
        String topic = name("simple");
        String group = newGroup("simple");
        createTopic(topic, 2);
        produceTo(topic, 0, 20);
        produceTo(topic, 1, 20);
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group, "f1", Map.of()),
                new StringDeserializer(), new StringDeserializer())) {
            c.assign(List.of(tp0, tp1));
            Map<Integer, Integer> n = new HashMap<>(Map.of(0, 0, 1, 0));
            long deadline = System.nanoTime() + WAIT.toNanos();
            while ((n.get(0) < 20 || n.get(1) < 20) && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    n.merge(r.partition(), 1, Integer::sum);
                }
            }
            require(n.get(0) == 20 && n.get(1) == 20, "first consumer read %s records, want 20 per partition", n);
            c.commitSync(Duration.ofSeconds(15)); // generation -1, no member id: a "simple" commit
            Map<TopicPartition, OffsetAndMetadata> com = c.committed(Set.of(tp0, tp1), Duration.ofSeconds(15));
            require(com.get(tp0) != null && com.get(tp0).offset() == 20 && com.get(tp1) != null
                    && com.get(tp1).offset() == 20, "committed() after commitSync: %s", com);
        }
        produceTo(topic, 0, 5);
        produceTo(topic, 1, 5);
        ConsumerGroupDescription d = describe(group);
        require(d.members().isEmpty() && d.groupState() == GroupState.EMPTY, "group is %s with %d members",
                d.groupState(), d.members().size());
        Collection<GroupListing> all = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all());
        require(all.stream().anyMatch(x -> x.groupId().equals(group)), "group %s not listed", group);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group, "f2", Map.of()),
                new StringDeserializer(), new StringDeserializer())) {
            c.assign(List.of(tp0, tp1));
            Map<Integer, List<Long>> offs = new TreeMap<>();
            long deadline = System.nanoTime() + WAIT.toNanos();
            int total = 0;
            while (total < 10 && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    offs.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.offset());
                    total++;
                }
            }
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(300))) {
                offs.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.offset());
            }
            List<Long> want = List.of(20L, 21L, 22L, 23L, 24L);
            require(want.equals(offs.get(0)) && want.equals(offs.get(1)),
                    "the second consumer read offsets %s, want %s on both partitions", offs, want);
            c.commitSync(Map.of(tp0, new OffsetAndMetadata(22, "half-way")), Duration.ofSeconds(15));
        }
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group, "f3", Map.of()),
                new StringDeserializer(), new StringDeserializer())) {
            Map<TopicPartition, OffsetAndMetadata> com = c.committed(Set.of(tp0, tp1), Duration.ofSeconds(15));
            require(com.get(tp0) != null && com.get(tp0).offset() == 22 && "half-way".equals(com.get(tp0).metadata()),
                    "tp0 committed %s, want 22 with metadata half-way", com.get(tp0));
            require(com.get(tp1) != null && com.get(tp1).offset() == 20, "tp1 committed %s, want 20", com.get(tp1));
            c.assign(List.of(tp0));
            long first = -1;
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (first < 0 && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    if (first < 0) {
                        first = r.offset();
                    }
                }
            }
            require(first == 22, "third consumer started at %d, want 22", first);
        }
    }

    // ------------------------------------------------------------------ main

    @Override
    protected void checks() {
        header(String.format("session.timeout.ms %d, %d records", SESSION_MS, RECORDS));
        check("a. eager RangeAssignor: 3 members, one leaves, all consumed, commits at end offsets",
                () -> leaveScenario("range", RangeAssignor.class.getName(), false));
        check("b. CooperativeStickyAssignor: 3 members, one leaves (incremental), all consumed, commits at end",
                () -> leaveScenario("coop", CooperativeStickyAssignor.class.getName(), true));
        check("c. a member JVM is killed (SIGKILL): survivors take over after the session timeout",
                this::killScenario);
        check("d. static membership: restart within the session timeout keeps the assignment, no rebalance",
                this::staticMembershipScenario);
        adminScenario();
        check("f. simple consumer (assign + group.id): commitSync, a new consumer resumes", this::simpleConsumerScenario);
    }

    /** Only the groups that exist, after removing static members a failed check left behind. */
    @Override
    protected void deleteGroups(Collection<String> created) throws Exception {
        Set<String> groups = new HashSet<>(created);
        Set<String> existing = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all()).stream()
                .map(GroupListing::groupId).collect(Collectors.toSet());
        groups.retainAll(existing);
        for (String g : groups) {
            try {
                admin.removeMembersFromConsumerGroup(g, new RemoveMembersFromConsumerGroupOptions()).all()
                        .get(30, TimeUnit.SECONDS);
            } catch (Exception ignored) {
                // usually: no members
            }
        }
        if (!groups.isEmpty()) {
            super.deleteGroups(groups);
        }
    }

    public static void main(String[] args) {
        Checks.main("java-groups", "GroupsCompat BOOTSTRAP", 1, args, 600, a -> new GroupsCompat(a[0]));
    }
}
