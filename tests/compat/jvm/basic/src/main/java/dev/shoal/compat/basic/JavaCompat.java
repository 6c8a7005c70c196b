package dev.shoal.compat.basic;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TopicListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidTopicException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

import dev.shoal.compat.harness.Checks;
import dev.shoal.compat.harness.Clients;
import dev.shoal.compat.harness.Suite;

/**
 * Compatibility checks of a Kafka-protocol server with the official Java client.
 *
 * <p>Usage: {@code java dev.shoal.compat.basic.JavaCompat BOOTSTRAP}. Assumes topic auto-creation
 * is off and consumer groups may be missing (consumers use assign(), no group.id). Every check is
 * one pass or one fail; the last line printed is {@code java-compat: N passed, M failed} and the
 * exit code is 1 when anything failed. Builds with kafka-clients 3.9 as well as 4.x (run-all.sh
 * runs it with the pom's 4.x client and again with 3.9.1); keep it that way.
 */
public final class JavaCompat extends Suite {

    JavaCompat(String bootstrap) {
        super("java-compat", "shoal-compat", bootstrap);
    }

    // ------------------------------------------------------------------ clients

    Map<String, String> describeTopicConfig(String topic) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config c = get(admin.describeConfigs(List.of(r)).all()).get(r);
        require(c != null, "no config returned for %s", topic);
        Map<String, String> m = new HashMap<>();
        for (ConfigEntry e : c.entries()) {
            m.put(e.name(), e.value());
        }
        return m;
    }

    KafkaProducer<byte[], byte[]> producer(String compression, Map<String, Object> extra) {
        Properties p = Clients.producer(bootstrap, "shoal-java-compat-producer");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        // Idempotence stays at the client's default (on): sequence numbers keep order and
        // drop duplicates with up to 5 requests in flight.
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.putAll(extra);
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    KafkaConsumer<byte[], byte[]> consumer(Map<String, Object> extra) {
        // No group.id: this suite runs against servers without consumer groups; assign() only.
        Properties p = Clients.consumer(bootstrap, "shoal-java-compat-consumer");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "500");
        p.putAll(extra);
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    /** Reads from the beginning of the given partitions until {@code want} records or a deadline. */
    static List<ConsumerRecord<byte[], byte[]>> readAll(KafkaConsumer<byte[], byte[]> c,
            Collection<TopicPartition> tps, int want, Duration timeout) {
        c.assign(tps);
        c.seekToBeginning(tps);
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        long deadline = System.nanoTime() + timeout.toNanos();
        while (out.size() < want && System.nanoTime() < deadline) {
            ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(500));
            for (ConsumerRecord<byte[], byte[]> r : recs) {
                out.add(r);
            }
        }
        // A short extra poll to notice unexpected extra records.
        if (out.size() >= want) {
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(300))) {
                out.add(r);
            }
        }
        return out;
    }

    static String str(byte[] b) {
        return b == null ? "<null>" : new String(b, StandardCharsets.UTF_8);
    }

    static List<String> headerList(Iterable<Header> hs) {
        List<String> l = new ArrayList<>();
        for (Header h : hs) {
            l.add(h.key() + "=" + str(h.value()));
        }
        return l;
    }

    // ------------------------------------------------------------------ admin checks

    void adminChecks() {
        String main = name("admin");
        String doomed = name("delete-me");
        final boolean[] mainCreated = {false};

        check("admin: createTopics with 4 partitions and configs", () -> {
            createTopic(main, 4, Map.of("retention.ms", "86400000", "max.message.bytes", "524288"));
            mainCreated[0] = true;
        });

        check("admin: createTopics of an existing topic -> TopicExistsException", () -> {
            require(mainCreated[0], "topic was not created");
            expectFailure(admin.createTopics(List.of(new NewTopic(main, 4, (short) 1))).all(),
                    TopicExistsException.class);
        });

        check("admin: createTopics with an invalid name -> InvalidTopicException", () -> {
            expectFailure(admin.createTopics(List.of(new NewTopic("bad/name with spaces!" + runId, 1, (short) 1))).all(),
                    InvalidTopicException.class);
        });

        check("admin: listTopics and describeTopics (partitions, leaders, topic id)", () -> {
            require(mainCreated[0], "topic was not created");
            Map<String, TopicListing> listings = get(admin.listTopics().namesToListings());
            TopicListing l = listings.get(main);
            require(l != null, "listTopics does not contain %s (got %d topics)", main, listings.size());
            require(!l.isInternal(), "topic %s is listed as internal", main);
            TopicDescription d = get(admin.describeTopics(List.of(main)).allTopicNames()).get(main);
            require(d != null, "describeTopics returned nothing for %s", main);
            require(d.name().equals(main), "describeTopics name %s", d.name());
            require(d.partitions().size() == 4, "want 4 partitions, got %d", d.partitions().size());
            Set<Integer> ids = new HashSet<>();
            for (TopicPartitionInfo pi : d.partitions()) {
                ids.add(pi.partition());
                require(pi.leader() != null && !pi.leader().isEmpty(), "partition %d has no leader", pi.partition());
                require(!pi.replicas().isEmpty(), "partition %d has no replicas", pi.partition());
                require(!pi.isr().isEmpty(), "partition %d has an empty ISR", pi.partition());
            }
            require(ids.equals(Set.of(0, 1, 2, 3)), "partition ids %s", ids);
            Uuid id = d.topicId();
            require(id != null && !id.equals(Uuid.ZERO_UUID), "topic id is %s", id);
            require(Objects.equals(l.topicId(), id), "listTopics id %s != describeTopics id %s", l.topicId(), id);
        });

        check("admin: describeTopics by topic id", () -> {
            require(mainCreated[0], "topic was not created");
            TopicDescription d = get(admin.describeTopics(List.of(main)).allTopicNames()).get(main);
            Uuid id = d.topicId();
            require(id != null && !id.equals(Uuid.ZERO_UUID), "topic id is %s", id);
            TopicDescription byId = get(admin.describeTopics(
                    org.apache.kafka.common.TopicCollection.ofTopicIds(List.of(id))).allTopicIds()).get(id);
            require(byId != null && main.equals(byId.name()), "describeTopics by id returned %s", byId);
            require(byId.partitions().size() == 4, "describeTopics by id: %d partitions, want 4",
                    byId.partitions().size());
            require(id.equals(byId.topicId()), "describeTopics by id: topic id %s, want %s", byId.topicId(), id);
        });

        check("admin: describeConfigs returns set values and defaults", () -> {
            require(mainCreated[0], "topic was not created");
            Map<String, String> m = describeTopicConfig(main);
            require("86400000".equals(m.get("retention.ms")), "retention.ms=%s", m.get("retention.ms"));
            require("524288".equals(m.get("max.message.bytes")), "max.message.bytes=%s", m.get("max.message.bytes"));
            require("delete".equals(m.get("cleanup.policy")), "cleanup.policy=%s", m.get("cleanup.policy"));
            require("CreateTime".equals(m.get("message.timestamp.type")), "message.timestamp.type=%s",
                    m.get("message.timestamp.type"));
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, main);
            Config c = get(admin.describeConfigs(List.of(r)).all()).get(r);
            ConfigEntry ret = c.get("retention.ms");
            require(ret.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "retention.ms source is %s, want DYNAMIC_TOPIC_CONFIG", ret.source());
            ConfigEntry cp = c.get("cleanup.policy");
            require(cp.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "cleanup.policy was never set but its source is %s", cp.source());
        });

        check("admin: incrementalAlterConfigs retention.ms", () -> {
            require(mainCreated[0], "topic was not created");
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, main);
            AlterConfigOp op = new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET);
            get(admin.incrementalAlterConfigs(Map.of(r, List.of(op))).all());
            eventually(Duration.ofSeconds(10), () -> {
                Map<String, String> m = describeTopicConfig(main);
                require("7200000".equals(m.get("retention.ms")), "retention.ms=%s after alter", m.get("retention.ms"));
                require("524288".equals(m.get("max.message.bytes")), "max.message.bytes=%s after altering another key",
                        m.get("max.message.bytes"));
            });
        });

        check("admin: createPartitions 4 -> 6", () -> {
            require(mainCreated[0], "topic was not created");
            get(admin.createPartitions(Map.of(main, NewPartitions.increaseTo(6))).all());
            eventually(Duration.ofSeconds(10), () -> {
                TopicDescription d = get(admin.describeTopics(List.of(main)).allTopicNames()).get(main);
                require(d.partitions().size() == 6, "want 6 partitions, got %d", d.partitions().size());
            });
        });

        check("admin: deleteTopics", () -> {
            createTopic(doomed, 1, Map.of());
            get(admin.deleteTopics(List.of(doomed)).all());
            createdTopics.remove(doomed);
            eventually(Duration.ofSeconds(15), () -> {
                Set<String> names = get(admin.listTopics().names());
                require(!names.contains(doomed), "topic %s still listed after delete", doomed);
            });
        });

        check("admin: describeCluster returns a node and a cluster id", () -> {
            DescribeClusterResult dc = admin.describeCluster();
            Collection<Node> nodes = get(dc.nodes());
            String clusterId = get(dc.clusterId());
            Node controller = get(dc.controller());
            require(!nodes.isEmpty(), "no nodes");
            for (Node n : nodes) {
                require(n.host() != null && !n.host().isEmpty() && n.port() > 0, "bad node %s", n);
            }
            require(clusterId != null && !clusterId.isEmpty(), "cluster id is %s", clusterId);
            require(controller != null && !controller.isEmpty(), "controller is %s", controller);
        });
    }

    // ------------------------------------------------------------------ produce / consume

    static byte[] bytes(String s) {
        return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
    }

    record Sent(int i, int partition, byte[] key, byte[] value, List<Header> headers, long offset) {}

    void roundTrip(String compression) throws Exception {
        final int partitions = 4;
        final int n = 400;
        String topic = name("codec-" + compression);
        createTopic(topic, partitions, Map.of());
        List<Sent> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> p = producer(compression, Map.of())) {
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            List<ProducerRecord<byte[], byte[]>> recs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                int part = i % partitions;
                byte[] key = (i % 11 == 0) ? null : bytes("key-" + i);
                byte[] value;
                if (i % 10 == 3) {
                    value = null;
                } else if (i % 10 == 5) {
                    value = new byte[0];
                } else {
                    value = bytes(("value-" + compression + "-" + i + " ").repeat(1 + i % 7));
                }
                List<Header> hs = new ArrayList<>();
                if (i % 3 != 0) {
                    hs.add(new RecordHeader("h-a", bytes("x" + i)));
                    hs.add(new RecordHeader("h-null", (byte[]) null));
                    hs.add(new RecordHeader("h-a", bytes("dup")));
                    hs.add(new RecordHeader("h-empty", new byte[0]));
                }
                ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, part, null, key, value, hs);
                recs.add(r);
                futures.add(p.send(r));
                if (i == n / 2) {
                    p.flush(); // make sure more than one batch per partition is produced
                }
            }
            p.flush();
            for (int i = 0; i < n; i++) {
                RecordMetadata md = get(futures.get(i));
                ProducerRecord<byte[], byte[]> r = recs.get(i);
                require(md.partition() == r.partition(), "record %d went to partition %d, want %d",
                        i, md.partition(), r.partition());
                List<Header> hs = new ArrayList<>();
                r.headers().forEach(hs::add);
                sent.add(new Sent(i, r.partition(), r.key(), r.value(), hs, md.offset()));
            }
        }
        // Offsets per partition must be 0..k-1, in send order.
        Map<Integer, List<Sent>> byPart = sent.stream().collect(Collectors.groupingBy(Sent::partition));
        for (Map.Entry<Integer, List<Sent>> e : byPart.entrySet()) {
            List<Sent> l = e.getValue();
            for (int j = 0; j < l.size(); j++) {
                require(l.get(j).offset() == j, "partition %d: record #%d acknowledged at offset %d",
                        e.getKey(), j, l.get(j).offset());
            }
        }
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < partitions; i++) {
            tps.add(new TopicPartition(topic, i));
        }
        List<ConsumerRecord<byte[], byte[]>> got;
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of())) {
            got = readAll(c, tps, n, Duration.ofSeconds(30));
        }
        require(got.size() == n, "consumed %d records, produced %d", got.size(), n);
        Map<Integer, List<ConsumerRecord<byte[], byte[]>>> gotByPart = got.stream()
                .collect(Collectors.groupingBy(ConsumerRecord::partition));
        for (int part = 0; part < partitions; part++) {
            List<Sent> want = byPart.getOrDefault(part, List.of());
            List<ConsumerRecord<byte[], byte[]>> have = gotByPart.getOrDefault(part, List.of());
            require(have.size() == want.size(), "partition %d: consumed %d, produced %d", part, have.size(), want.size());
            for (int j = 0; j < want.size(); j++) {
                Sent s = want.get(j);
                ConsumerRecord<byte[], byte[]> r = have.get(j);
                require(r.offset() == s.offset(), "partition %d #%d: offset %d, want %d", part, j, r.offset(), s.offset());
                require(Arrays.equals(r.key(), s.key()), "partition %d offset %d: key %s, want %s", part,
                        r.offset(), str(r.key()), str(s.key()));
                require((r.value() == null) == (s.value() == null),
                        "partition %d offset %d: value null=%s, want null=%s", part, r.offset(),
                        r.value() == null, s.value() == null);
                require(Arrays.equals(r.value(), s.value()), "partition %d offset %d: value %s, want %s", part,
                        r.offset(), str(r.value()), str(s.value()));
                require(headerList(r.headers()).equals(headerList(s.headers())),
                        "partition %d offset %d: headers %s, want %s", part, r.offset(),
                        headerList(r.headers()), headerList(s.headers()));
                for (Header h : r.headers()) {
                    if (h.key().equals("h-null")) {
                        require(h.value() == null, "header h-null has a non-null value");
                    }
                }
                require(r.timestampType() == TimestampType.CREATE_TIME, "timestamp type %s", r.timestampType());
            }
        }
    }

    void produceConsumeChecks() {
        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
            check("produce/consume: compression=" + codec + " (keys, headers, null values, order)",
                    () -> roundTrip(codec));
        }
    }

    void largeRecordCheck() {
        check("produce/consume: ~1 MB record", () -> {
            String topic = name("large");
            createTopic(topic, 1, Map.of("max.message.bytes", "4194304"));
            byte[] value = new byte[1_000_000];
            new Random(42).nextBytes(value);
            byte[] key = bytes("big");
            long off;
            try (KafkaProducer<byte[], byte[]> p = producer("none",
                    Map.of(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, "4194304",
                           ProducerConfig.BUFFER_MEMORY_CONFIG, String.valueOf(64L << 20)))) {
                get(p.send(new ProducerRecord<>(topic, 0, key, bytes("small-before"))));
                off = get(p.send(new ProducerRecord<>(topic, 0, key, value))).offset();
                get(p.send(new ProducerRecord<>(topic, 0, key, bytes("small-after"))));
            }
            require(off == 1, "large record acknowledged at offset %d, want 1", off);
            List<ConsumerRecord<byte[], byte[]>> got;
            try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(
                    ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, String.valueOf(8 << 20),
                    ConsumerConfig.FETCH_MAX_BYTES_CONFIG, String.valueOf(16 << 20)))) {
                got = readAll(c, List.of(new TopicPartition(topic, 0)), 3, Duration.ofSeconds(30));
            }
            require(got.size() == 3, "consumed %d records, want 3", got.size());
            require("small-before".equals(str(got.get(0).value())), "record 0 is %s", str(got.get(0).value()));
            require(got.get(1).offset() == 1, "large record consumed at offset %d", got.get(1).offset());
            require(got.get(1).value() != null && got.get(1).value().length == value.length,
                    "large record has %d bytes, want %d",
                    got.get(1).value() == null ? -1 : got.get(1).value().length, value.length);
            require(Arrays.equals(got.get(1).value(), value), "large record content differs");
            require("small-after".equals(str(got.get(2).value())), "record 2 is %s", str(got.get(2).value()));
        });
    }

    // ------------------------------------------------------------------ offsets and timestamps

    void offsetChecks() {
        String topic = name("times");
        TopicPartition tp = new TopicPartition(topic, 0);
        final int n = 10;
        final long base = System.currentTimeMillis() - 600_000; // 10 minutes ago, 1 s apart
        final boolean[] produced = {false};

        check("offsets: produce records with explicit timestamps", () -> {
            createTopic(topic, 1, Map.of());
            try (KafkaProducer<byte[], byte[]> p = producer("none", Map.of())) {
                for (int i = 0; i < n; i++) {
                    RecordMetadata md = get(p.send(new ProducerRecord<>(topic, 0, base + i * 1000L,
                            bytes("k" + i), bytes("v" + i))));
                    require(md.offset() == i, "record %d acknowledged at offset %d", i, md.offset());
                    require(md.timestamp() == base + i * 1000L, "record %d acknowledged with timestamp %d, want %d",
                            i, md.timestamp(), base + i * 1000L);
                }
            }
            produced[0] = true;
        });

        check("offsets: offsetsForTimes returns the first offset with timestamp >= target", () -> {
            require(produced[0], "records were not produced");
            try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of())) {
                // exact hit
                Map<TopicPartition, OffsetAndTimestamp> r = c.offsetsForTimes(Map.of(tp, base + 4000L), CALL_TIMEOUT);
                OffsetAndTimestamp o = r.get(tp);
                require(o != null && o.offset() == 4 && o.timestamp() == base + 4000L,
                        "target base+4000: got %s, want offset 4 ts %d", o, base + 4000L);
                // between two records
                o = c.offsetsForTimes(Map.of(tp, base + 2500L), CALL_TIMEOUT).get(tp);
                require(o != null && o.offset() == 3 && o.timestamp() == base + 3000L,
                        "target base+2500: got %s, want offset 3 ts %d", o, base + 3000L);
                // before the first record
                o = c.offsetsForTimes(Map.of(tp, base - 100_000L), CALL_TIMEOUT).get(tp);
                require(o != null && o.offset() == 0 && o.timestamp() == base,
                        "target before first: got %s, want offset 0 ts %d", o, base);
                // after the last record: no such offset
                o = c.offsetsForTimes(Map.of(tp, base + n * 1000L + 1), CALL_TIMEOUT).get(tp);
                require(o == null, "target after last: got %s, want null", o);
            }
        });

        check("offsets: beginningOffsets / endOffsets", () -> {
            require(produced[0], "records were not produced");
            try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of())) {
                Long b = c.beginningOffsets(List.of(tp), CALL_TIMEOUT).get(tp);
                Long e = c.endOffsets(List.of(tp), CALL_TIMEOUT).get(tp);
                require(b != null && b == 0, "beginning offset %s, want 0", b);
                require(e != null && e == n, "end offset %s, want %d", e, n);
                // Fetch from the middle: seek to 7 reads 7, 8, 9 with their timestamps.
                c.assign(List.of(tp));
                c.seek(tp, 7);
                List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
                long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
                while (got.size() < 3 && System.nanoTime() < deadline) {
                    c.poll(Duration.ofMillis(500)).forEach(got::add);
                }
                require(got.size() == 3, "reading from offset 7 gave %d records, want 3", got.size());
                for (int j = 0; j < 3; j++) {
                    ConsumerRecord<byte[], byte[]> r = got.get(j);
                    require(r.offset() == 7 + j, "record %d has offset %d", j, r.offset());
                    require(r.timestamp() == base + (7 + j) * 1000L, "offset %d has timestamp %d, want %d",
                            r.offset(), r.timestamp(), base + (7 + j) * 1000L);
                    require(r.timestampType() == TimestampType.CREATE_TIME, "timestamp type %s", r.timestampType());
                }
            }
        });
    }

    void logAppendTimeCheck() {
        check("timestamps: LogAppendTime topic returns broker-assigned timestamps", () -> {
            String topic = name("logappend");
            createTopic(topic, 1, Map.of("message.timestamp.type", "LogAppendTime"));
            long old = System.currentTimeMillis() - 86_400_000L; // one day ago
            long before = System.currentTimeMillis();
            RecordMetadata md;
            try (KafkaProducer<byte[], byte[]> p = producer("lz4", Map.of())) {
                md = get(p.send(new ProducerRecord<>(topic, 0, old, bytes("k"), bytes("v"))));
                get(p.send(new ProducerRecord<>(topic, 0, old + 1, bytes("k2"), bytes("v2"))));
            }
            long after = System.currentTimeMillis();
            List<ConsumerRecord<byte[], byte[]>> got;
            try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of())) {
                got = readAll(c, List.of(new TopicPartition(topic, 0)), 2, Duration.ofSeconds(30));
            }
            require(got.size() == 2, "consumed %d records, want 2", got.size());
            for (ConsumerRecord<byte[], byte[]> r : got) {
                require(r.timestampType() == TimestampType.LOG_APPEND_TIME, "offset %d: timestamp type %s, want %s",
                        r.offset(), r.timestampType(), TimestampType.LOG_APPEND_TIME);
                require(r.timestamp() >= before - 60_000 && r.timestamp() <= after + 60_000,
                        "offset %d: timestamp %d is not close to now (%d..%d); the producer sent %d",
                        r.offset(), r.timestamp(), before, after, old);
            }
            // The produce response carries the log append time as well.
            require(md.timestamp() >= before - 60_000 && md.timestamp() <= after + 60_000,
                    "produce response timestamp %d is not the log append time (now %d); the producer sent %d",
                    md.timestamp(), after, old);
        });
    }

    // ------------------------------------------------------------------ main

    @Override
    protected void checks() {
        header("");
        adminChecks();
        produceConsumeChecks();
        largeRecordCheck();
        offsetChecks();
        logAppendTimeCheck();
    }

    public static void main(String[] args) {
        Checks.main("java-compat", "JavaCompat BOOTSTRAP", 1, args, 600, a -> new JavaCompat(a[0]));
    }
}
