package dev.shoal.compat.txn;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeProducersResult.PartitionProducerState;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsOptions;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.InvalidTxnStateException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TransactionalIdNotFoundException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

import dev.shoal.compat.harness.Checks;
import dev.shoal.compat.harness.Clients;
import dev.shoal.compat.harness.Suite;

import static dev.shoal.compat.harness.Clients.sendAll;

/**
 * Idempotent-producer and transaction compatibility checks of a Kafka-protocol server with the
 * official Java client (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
 * TxnOffsetCommit, Fetch/ListOffsets with read_committed, DescribeTransactions, ListTransactions,
 * DescribeProducers).
 *
 * <p>Usage: {@code java dev.shoal.compat.txn.TxnCompat BOOTSTRAP}. Assumes topic auto-creation is
 * off. Every check is one pass or one fail; the last line printed is
 * {@code java-txn: N passed, M failed} and the exit code is 1 when anything failed.
 * {@code -Dcompat.only=REGEX} runs only the checks whose name matches.
 */
public final class TxnCompat extends Suite {

    /** Upper bound for each wait for records to arrive or state to settle. */
    static final Duration WAIT = Duration.ofSeconds(Long.getLong("compat.waitSeconds", 30));
    /** After a reader has what it expects it keeps polling this long for records that must not come. */
    static final Duration SETTLE = Duration.ofMillis(1500);
    /** Check 6: transaction.timeout.ms of the transaction left to time out... */
    static final int SHORT_TXN_TIMEOUT_MS = 3000;
    /** ...and the longest wait for the server to abort it. */
    static final Duration TXN_TIMEOUT_WAIT =
            Duration.ofSeconds(Long.getLong("compat.txnTimeoutWaitSeconds", 30));
    /** Clients a check opened; closed (bounded) after the check, whatever happened. */
    final List<AutoCloseable> open = new ArrayList<>();
    /** What the clients threw where the protocol leaves room (printed at the end). */
    final Map<String, String> observed = new TreeMap<>();

    TxnCompat(String bootstrap) {
        super("java-txn", "shoal-txn", bootstrap);
    }

    // ------------------------------------------------------------------ harness

    @Override
    protected void afterCheck() {
        closeAll();
    }

    void observe(String what, Throwable t) {
        observed.put(what, t == null ? "(nothing thrown)" : chain(t));
        info("%s: %s", what, t == null ? "(nothing thrown)" : chain(t));
    }

    <T extends AutoCloseable> T track(T c) {
        open.add(c);
        return c;
    }

    /** Closes what the check opened, newest first, each with a bounded wait. */
    void closeAll() {
        for (int i = open.size() - 1; i >= 0; i--) {
            AutoCloseable c = open.get(i);
            try {
                if (c instanceof KafkaProducer) {
                    ((KafkaProducer<?, ?>) c).close(Duration.ofSeconds(5));
                } else if (c instanceof KafkaConsumer) {
                    ((KafkaConsumer<?, ?>) c).close(CloseOptions.timeout(Duration.ofSeconds(5)));
                } else {
                    c.close();
                }
            } catch (Exception e) {
                if (VERBOSE) {
                    info("closing %s: %s", c.getClass().getSimpleName(), e);
                }
            }
        }
        open.clear();
    }

    // ------------------------------------------------------------------ clients

    /** A producer with the client's defaults for idempotence and acks (3.x and 4.x: on, all) plus extras. */
    KafkaProducer<String, String> producer(String clientId, Map<String, Object> extra) {
        Properties p = Clients.producer(bootstrap, "shoal-java-txn-" + clientId);
        p.putAll(extra);
        return track(new KafkaProducer<>(p, new StringSerializer(), new StringSerializer()));
    }

    /** A transactional producer; initTransactions is left to the caller. */
    KafkaProducer<String, String> txnProducer(String clientId, String transactionalId, int timeoutMs) {
        return producer(clientId, Map.of(
                ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId,
                ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, Integer.toString(timeoutMs)));
    }

    Reader reader(String clientId, IsolationLevel iso, Collection<TopicPartition> tps) {
        return track(new Reader(bootstrap, "shoal-java-txn-" + clientId, iso, tps));
    }

    /** {@code n} records to one partition with values PREFIX-0..PREFIX-(n-1). */
    static List<ProducerRecord<String, String>> records(TopicPartition tp, String prefix, int n) {
        List<ProducerRecord<String, String>> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(new ProducerRecord<>(tp.topic(), tp.partition(), "k" + i, prefix + "-" + i));
        }
        return out;
    }

    static List<String> values(String prefix, int n) {
        return IntStream.range(0, n).mapToObj(i -> prefix + "-" + i).collect(Collectors.toList());
    }

    static List<Long> range(long from, long toExclusive) {
        return java.util.stream.LongStream.range(from, toExclusive).boxed().collect(Collectors.toList());
    }

    static List<Long> offsets(List<RecordMetadata> mds) {
        return mds.stream().map(RecordMetadata::offset).collect(Collectors.toList());
    }

    @SafeVarargs
    static <T> List<T> concat(List<T>... lists) {
        List<T> out = new ArrayList<>();
        for (List<T> l : lists) {
            out.addAll(l);
        }
        return out;
    }

    /** Admin ListOffsets(latest) of one partition with the given isolation level. */
    long latest(TopicPartition tp, IsolationLevel iso) throws Exception {
        return get(admin.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(iso)).all())
                .get(tp).offset();
    }

    /** The group's committed offset of one partition (Admin OffsetFetch), null when it has none. */
    Long committed(String group, TopicPartition tp, boolean requireStable) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> m = get(admin.listConsumerGroupOffsets(group,
                new ListConsumerGroupOffsetsOptions().requireStable(requireStable)).partitionsToOffsetAndMetadata());
        OffsetAndMetadata om = m.get(tp);
        return om == null ? null : om.offset();
    }

    // ------------------------------------------------------------------ 1: idempotent producer

    /**
     * The default producer (3.x and 4.x: enable.idempotence=true, acks=all, 5 in-flight requests per
     * connection) writes 2000 keyed records in many small batches to 3 partitions. Every record is
     * in the log exactly once, per partition in send order, at contiguous offsets.
     */
    void idempotentDefaultProducer() throws Exception {
        List<TopicPartition> tps = createTopic(name("idem"), 3);
        String topic = tps.get(0).topic();
        int n = 2000;
        String pad = "x".repeat(100);
        // Small batches, so many produce requests (each with its own sequence range) are in flight.
        KafkaProducer<String, String> p = producer("idem", Map.of(ProducerConfig.BATCH_SIZE_CONFIG, "2048"));
        List<ProducerRecord<String, String>> recs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            recs.add(new ProducerRecord<>(topic, "key-" + i, "v-" + i + "-" + pad));
        }
        List<RecordMetadata> mds = sendAll(p, recs);

        // What the producer was told: per partition, the values in send order at offsets 0, 1, 2...
        Map<Integer, List<String>> sent = new TreeMap<>();
        for (int i = 0; i < n; i++) {
            RecordMetadata md = mds.get(i);
            List<String> l = sent.computeIfAbsent(md.partition(), k -> new ArrayList<>());
            require(md.offset() == l.size(), "record %d went to partition %d offset %d, want offset %d",
                    i, md.partition(), md.offset(), l.size());
            l.add(recs.get(i).value());
        }
        require(sent.size() == 3, "the keys hashed to partitions %s, want all 3", sent.keySet());
        for (TopicPartition tp : tps) {
            long end = latest(tp, IsolationLevel.READ_UNCOMMITTED);
            require(end == sent.get(tp.partition()).size(), "partition %d: end offset %d, %d records sent",
                    tp.partition(), end, sent.get(tp.partition()).size());
        }

        Reader r = reader("idem-reader", IsolationLevel.READ_UNCOMMITTED, tps).pollUntil(n, WAIT).pollFor(SETTLE);
        require(r.records.size() == n, "consumer got %d records, want %d", r.records.size(), n);
        for (TopicPartition tp : tps) {
            List<String> want = sent.get(tp.partition());
            require(r.values(tp.partition()).equals(want), "partition %d: consumed values differ from what was sent "
                    + "(%d consumed, %d sent)", tp.partition(), r.values(tp.partition()).size(), want.size());
            require(r.offsets(tp.partition()).equals(range(0, want.size())),
                    "partition %d: consumed offsets are not 0..%d", tp.partition(), want.size() - 1);
        }
        info("partition sizes %s", sent.entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().size(), (a, b) -> a, TreeMap::new)));
    }

    // ------------------------------------------------------------------ 2: commit and abort

    /**
     * On 2 partitions: transaction 1 (10 records per partition) committed, transaction 2 (5 per
     * partition) aborted, transaction 3 (10 per partition) committed. Each transaction marker takes
     * an offset: committed records at 0..9 and 17..26, aborted at 11..15, end offset 28.
     * read_committed returns exactly the 20 committed records per partition; read_uncommitted also
     * the 5 aborted ones; neither returns markers, and both end at position 28.
     */
    void commitAndAbort() throws Exception {
        List<TopicPartition> tps = createTopic(name("commit-abort"), 2);
        KafkaProducer<String, String> p = txnProducer("commit-abort", name("commit-abort"), 60000);
        p.initTransactions();

        Map<Integer, List<Long>> c1 = new HashMap<>();
        Map<Integer, List<Long>> ab = new HashMap<>();
        Map<Integer, List<Long>> c3 = new HashMap<>();
        p.beginTransaction();
        for (TopicPartition tp : tps) {
            c1.put(tp.partition(), offsets(sendAll(p, records(tp, "c1", 10))));
        }
        p.commitTransaction();
        p.beginTransaction();
        for (TopicPartition tp : tps) {
            ab.put(tp.partition(), offsets(sendAll(p, records(tp, "aborted", 5))));
        }
        // Flushed (sendAll waits for the acks), so the aborted records are in the log.
        p.abortTransaction();
        p.beginTransaction();
        for (TopicPartition tp : tps) {
            c3.put(tp.partition(), offsets(sendAll(p, records(tp, "c3", 10))));
        }
        p.commitTransaction();

        for (TopicPartition tp : tps) {
            int i = tp.partition();
            require(c1.get(i).equals(range(0, 10)), "p%d: txn 1 offsets %s, want 0..9", i, c1.get(i));
            require(ab.get(i).equals(range(11, 16)), "p%d: aborted txn offsets %s, want 11..15 (marker at 10)",
                    i, ab.get(i));
            require(c3.get(i).equals(range(17, 27)), "p%d: txn 3 offsets %s, want 17..26 (marker at 16)",
                    i, c3.get(i));
        }
        // The end offsets include the last commit marker (offset 27). The markers may be written
        // after commitTransaction returns, so the end offsets settle eventually.
        eventually(WAIT, () -> {
            for (TopicPartition tp : tps) {
                long hw = latest(tp, IsolationLevel.READ_UNCOMMITTED);
                long lso = latest(tp, IsolationLevel.READ_COMMITTED);
                require(hw == 28 && lso == 28, "p%d: end offset %d / last stable offset %d, want 28 / 28",
                        tp.partition(), hw, lso);
            }
        });

        Reader rc = reader("commit-abort-rc", IsolationLevel.READ_COMMITTED, tps).pollUntil(40, WAIT).pollFor(SETTLE);
        Reader ru = reader("commit-abort-ru", IsolationLevel.READ_UNCOMMITTED, tps).pollUntil(50, WAIT).pollFor(SETTLE);
        for (TopicPartition tp : tps) {
            int i = tp.partition();
            List<String> committed = concat(values("c1", 10), values("c3", 10));
            require(rc.values(i).equals(committed), "read_committed p%d returned %s, want c1-0..9 and c3-0..9",
                    i, rc.values(i));
            require(rc.offsets(i).equals(concat(range(0, 10), range(17, 27))),
                    "read_committed p%d offsets %s, want 0..9, 17..26", i, rc.offsets(i));
            List<String> all = concat(values("c1", 10), values("aborted", 5), values("c3", 10));
            require(ru.values(i).equals(all), "read_uncommitted p%d returned %s, want c1, aborted and c3 records",
                    i, ru.values(i));
            require(ru.offsets(i).equals(concat(range(0, 10), range(11, 16), range(17, 27))),
                    "read_uncommitted p%d offsets %s, want 0..9, 11..15, 17..26", i, ru.offsets(i));
        }
        // Both consumers step over the markers: their positions end after the last one.
        for (Reader r : List.of(rc, ru)) {
            for (TopicPartition tp : tps) {
                long pos = r.consumer.position(tp, Duration.ofSeconds(10));
                require(pos == 28, "%s consumer position on p%d is %d, want 28", r.isolation, tp.partition(), pos);
            }
        }
    }

    // ------------------------------------------------------------------ 3: last stable offset

    /**
     * One partition: a committed transaction (offsets 0..4, marker 5), then a transaction left open
     * (6..8, flushed) and 4 non-transactional records after it (9..12). The LSO is 6: read_committed
     * returns only 0..4, ListOffsets(latest, READ_COMMITTED) and the read_committed consumer's
     * endOffsets say 6, READ_UNCOMMITTED says 13; read_uncommitted returns all 12 records. After the
     * commit (marker 13) the read_committed consumer gets 6..12 and LSO = end offset = 14.
     */
    void lastStableOffset() throws Exception {
        TopicPartition tp = createTopic(name("lso"), 1).get(0);
        KafkaProducer<String, String> first = txnProducer("lso-first", name("lso-first"), 60000);
        first.initTransactions();
        first.beginTransaction();
        require(offsets(sendAll(first, records(tp, "committed", 5))).equals(range(0, 5)),
                "first transaction not at offsets 0..4");
        first.commitTransaction();

        KafkaProducer<String, String> open = txnProducer("lso-open", name("lso-open"), 60000);
        open.initTransactions();
        open.beginTransaction();
        List<Long> openOffsets = offsets(sendAll(open, records(tp, "open", 3)));
        require(openOffsets.equals(range(6, 9)), "open transaction at offsets %s, want 6..8", openOffsets);

        KafkaProducer<String, String> plain = producer("lso-plain", Map.of());
        List<Long> plainOffsets = offsets(sendAll(plain, records(tp, "after", 4)));
        require(plainOffsets.equals(range(9, 13)), "non-transactional records at %s, want 9..12", plainOffsets);

        long lso = latest(tp, IsolationLevel.READ_COMMITTED);
        long hw = latest(tp, IsolationLevel.READ_UNCOMMITTED);
        require(lso == 6, "ListOffsets(latest, READ_COMMITTED) = %d, want 6 (first offset of the open txn)", lso);
        require(hw == 13, "ListOffsets(latest, READ_UNCOMMITTED) = %d, want 13 (high watermark)", hw);

        Reader rc = reader("lso-rc", IsolationLevel.READ_COMMITTED, List.of(tp)).pollUntil(5, WAIT)
                .pollFor(Duration.ofSeconds(2));
        require(rc.values().equals(values("committed", 5)),
                "read_committed returned %s while the txn is open, want only committed-0..4", rc.values());
        long rcEnd = rc.consumer.endOffsets(List.of(tp), Duration.ofSeconds(15)).get(tp);
        require(rcEnd == 6, "read_committed consumer endOffsets = %d, want 6", rcEnd);
        long rcPos = rc.consumer.position(tp, Duration.ofSeconds(10));
        require(rcPos <= 6, "read_committed consumer position %d is past the LSO 6", rcPos);

        Reader ru = reader("lso-ru", IsolationLevel.READ_UNCOMMITTED, List.of(tp)).pollUntil(12, WAIT).pollFor(SETTLE);
        List<String> all = concat(values("committed", 5), values("open", 3), values("after", 4));
        require(ru.values().equals(all), "read_uncommitted returned %s, want %s", ru.values(), all);

        open.commitTransaction();
        eventually(WAIT, () -> {
            long l = latest(tp, IsolationLevel.READ_COMMITTED);
            long h = latest(tp, IsolationLevel.READ_UNCOMMITTED);
            require(l == 14 && h == 14, "after the commit LSO %d, end offset %d; want 14, 14", l, h);
        });
        rc.pollUntil(12, WAIT).pollFor(SETTLE);
        require(rc.values().equals(all), "after the commit read_committed has %s, want %s", rc.values(), all);
        require(rc.offsets(0).equals(concat(range(0, 5), range(6, 13))), "read_committed offsets %s", rc.offsets(0));
    }

    // ------------------------------------------------------------------ 4: zombie fencing

    /**
     * Producer A (transactional id X) opens a transaction and writes 3 records; producer B
     * initializes the same id, which aborts A's transaction and fences A. A's next send and its
     * commit fail (ProducerFencedException or InvalidProducerEpochException); A's late record is
     * not appended at all; read_committed sees only B's committed records.
     */
    void zombieFencing() throws Exception {
        TopicPartition tp = createTopic(name("fence"), 1).get(0);
        String txnId = name("fence");
        KafkaProducer<String, String> a = txnProducer("fence-a", txnId, 60000);
        a.initTransactions();
        a.beginTransaction();
        sendAll(a, records(tp, "zombie", 3));

        KafkaProducer<String, String> b = txnProducer("fence-b", txnId, 60000);
        b.initTransactions();

        Throwable sendErr = null;
        try {
            get(a.send(new ProducerRecord<>(tp.topic(), tp.partition(), "k", "zombie-late")));
        } catch (ExecutionException e) {
            sendErr = e.getCause();
        } catch (KafkaException e) {
            sendErr = e;
        }
        observe("4. fenced producer's send", sendErr);
        Throwable commitErr = null;
        try {
            a.commitTransaction();
        } catch (KafkaException e) {
            commitErr = e;
        }
        observe("4. fenced producer's commitTransaction", commitErr);
        require(sendErr != null, "the fenced producer's send succeeded");
        require(commitErr != null, "the fenced producer's commitTransaction succeeded");
        require(findInChain(sendErr, ProducerFencedException.class, InvalidProducerEpochException.class) != null
                        || findInChain(commitErr, ProducerFencedException.class, InvalidProducerEpochException.class) != null,
                "neither the send (%s) nor the commit (%s) failed with ProducerFenced/InvalidProducerEpoch",
                chain(sendErr), chain(commitErr));

        b.beginTransaction();
        sendAll(b, records(tp, "b", 2));
        b.commitTransaction();

        Reader rc = reader("fence-rc", IsolationLevel.READ_COMMITTED, List.of(tp)).pollUntil(2, WAIT).pollFor(SETTLE);
        require(rc.values().equals(values("b", 2)), "read_committed returned %s, want b-0, b-1", rc.values());
        Reader ru = reader("fence-ru", IsolationLevel.READ_UNCOMMITTED, List.of(tp)).pollUntil(5, WAIT).pollFor(SETTLE);
        require(ru.values().equals(concat(values("zombie", 3), values("b", 2))),
                "read_uncommitted returned %s, want zombie-0..2 (aborted) then b-0, b-1 (no zombie-late)", ru.values());
    }

    // ------------------------------------------------------------------ 5: sendOffsetsToTransaction

    /**
     * Consume-transform-produce: a group member (subscribe, read_committed) reads an input topic
     * of 20 records, writes one output record per input record and sends its offsets to the
     * transaction. The group's offset appears (Admin listConsumerGroupOffsets) only after the
     * commit; an aborted transaction leaves it unchanged (and its outputs invisible); after
     * rewinding and redoing, the output has each input exactly once and the group is at 20.
     */
    void sendOffsetsToTransaction() throws Exception {
        TopicPartition in = createTopic(name("eos-in"), 1).get(0);
        TopicPartition out = createTopic(name("eos-out"), 1).get(0);
        String group = newGroup("eos");
        int n = 20;
        sendAll(producer("eos-input", Map.of()), records(in, "in", n));

        Properties cp = Clients.consumer(bootstrap, "shoal-java-txn-eos-consumer");
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "7");
        cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        cp.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "200");
        KafkaConsumer<String, String> consumer =
                track(new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer()));
        consumer.subscribe(List.of(in.topic()));
        KafkaProducer<String, String> p = txnProducer("eos", name("eos"), 60000);
        p.initTransactions();

        // Transaction 1: the first poll's records, committed.
        long next1 = transformOnce(consumer, p, in, out);
        require(committed(group, in, false) == null,
                "the group has a committed offset before the transaction committed");
        p.commitTransaction();
        eventually(WAIT, () -> {
            Long c = committed(group, in, false);
            require(c != null && c == next1, "after the commit the group's offset is %s, want %d", c, next1);
        });
        Long stable = committed(group, in, true);
        require(stable != null && stable == next1, "requireStable OffsetFetch says %s, want %d", stable, next1);
        info("transaction 1 processed offsets 0..%d", next1 - 1);

        // Transaction 2: the next poll's records, aborted: the offset stays.
        long next2 = transformOnce(consumer, p, in, out);
        p.abortTransaction();
        long abortedOutputs = next2 - next1;
        Thread.sleep(1000); // give a wrongly applied offset time to show up
        Long afterAbort = committed(group, in, false);
        require(afterAbort != null && afterAbort == next1, "after the abort the group's offset is %s, want %d",
                afterAbort, next1);
        Long afterAbortStable = committed(group, in, true);
        require(afterAbortStable != null && afterAbortStable == next1,
                "after the abort requireStable OffsetFetch says %s, want %d", afterAbortStable, next1);
        info("transaction 2 (aborted) processed offsets %d..%d", next1, next2 - 1);

        // Like an application after an abort: rewind to the committed offset and carry on.
        consumer.seek(in, next1);
        long next = next1;
        while (next < n) {
            next = transformOnce(consumer, p, in, out);
            p.commitTransaction();
        }
        require(next == n, "processed up to offset %d, want %d", next, n);
        eventually(WAIT, () -> {
            Long c = committed(group, in, false);
            require(c != null && c == n, "at the end the group's offset is %s, want %d", c, n);
        });

        List<String> want = values("out-in", n);
        Reader rc = reader("eos-rc", IsolationLevel.READ_COMMITTED, List.of(out)).pollUntil(n, WAIT).pollFor(SETTLE);
        require(rc.values().equals(want), "read_committed output %s, want out-in-0..%d once each", rc.values(), n - 1);
        Reader ru = reader("eos-ru", IsolationLevel.READ_UNCOMMITTED, List.of(out))
                .pollUntil((int) (n + abortedOutputs), WAIT).pollFor(SETTLE);
        require(ru.records.size() == n + abortedOutputs, "read_uncommitted output has %d records, want %d "
                + "(%d committed + %d aborted)", ru.records.size(), n + abortedOutputs, n, abortedOutputs);
    }

    /**
     * One consume-transform-produce step: begins a transaction, polls one non-empty batch, writes
     * an output per record, sends the consumer's offsets (with its group metadata) to the
     * transaction. Returns the next input offset; the caller commits or aborts.
     */
    long transformOnce(KafkaConsumer<String, String> consumer, KafkaProducer<String, String> p,
                       TopicPartition in, TopicPartition out) throws Exception {
        ConsumerRecords<String, String> batch = ConsumerRecords.empty();
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (batch.isEmpty()) {
            require(System.nanoTime() < deadline, "the group consumer got no records within %d s", WAIT.toSeconds());
            batch = consumer.poll(Duration.ofMillis(200));
        }
        p.beginTransaction();
        long next = -1;
        List<ProducerRecord<String, String>> outs = new ArrayList<>();
        for (ConsumerRecord<String, String> r : batch) {
            require(r.partition() == in.partition(), "record from partition %d", r.partition());
            require(next < 0 || r.offset() == next, "input offset %d after %d", r.offset(), next - 1);
            outs.add(new ProducerRecord<>(out.topic(), out.partition(), r.key(), "out-" + r.value()));
            next = r.offset() + 1;
        }
        sendAll(p, outs);
        p.sendOffsetsToTransaction(Map.of(in, new OffsetAndMetadata(next)), consumer.groupMetadata());
        return next;
    }

    // ------------------------------------------------------------------ 6: transaction timeout

    /**
     * A transaction with transaction.timeout.ms=3000 is begun, written to (3 records) and left
     * open; 2 non-transactional records follow on the same partition. The server aborts it after
     * the timeout (not before: the LSO stays at its first offset for at least 3 s). Its
     * commitTransaction then fails; read_committed never returns its records and is not stuck
     * behind it; a new producer with the same transactional id initializes and commits.
     */
    void transactionTimeout() throws Exception {
        TopicPartition tp = createTopic(name("timeout"), 1).get(0);
        String txnId = name("timeout");
        KafkaProducer<String, String> p = txnProducer("timeout", txnId, SHORT_TXN_TIMEOUT_MS);
        p.initTransactions();
        long t0 = System.nanoTime(); // before the transaction starts on the server
        p.beginTransaction();
        require(offsets(sendAll(p, records(tp, "timed", 3))).equals(range(0, 3)), "timed-out txn not at 0..2");
        sendAll(producer("timeout-plain", Map.of()), records(tp, "after", 2));

        // Wait until the server has aborted it: the LSO moves from 0 to the end (the marker at 5).
        long deadline = System.nanoTime() + TXN_TIMEOUT_WAIT.toNanos();
        long lso;
        while ((lso = latest(tp, IsolationLevel.READ_COMMITTED)) == 0 && System.nanoTime() < deadline) {
            Thread.sleep(250);
        }
        long abortedAfterMs = (System.nanoTime() - t0) / 1_000_000;
        require(lso != 0, "the transaction (timeout %d ms) was still open after %d ms",
                SHORT_TXN_TIMEOUT_MS, abortedAfterMs);
        info("the server ended the transaction %d ms after it began (LSO now %d)", abortedAfterMs, lso);
        require(abortedAfterMs >= SHORT_TXN_TIMEOUT_MS, "the transaction ended after %d ms, before its %d ms timeout",
                abortedAfterMs, SHORT_TXN_TIMEOUT_MS);
        eventually(WAIT, () -> {
            long l = latest(tp, IsolationLevel.READ_COMMITTED);
            long h = latest(tp, IsolationLevel.READ_UNCOMMITTED);
            require(l == 6 && h == 6, "LSO %d, end offset %d; want 6, 6 (abort marker at 5)", l, h);
        });

        Throwable commitErr = null;
        try {
            p.commitTransaction();
        } catch (KafkaException e) {
            commitErr = e;
        }
        observe("6. commitTransaction of a timed-out transaction", commitErr);
        require(commitErr != null, "commitTransaction of the timed-out transaction succeeded");
        require(findInChain(commitErr, ProducerFencedException.class, InvalidProducerEpochException.class,
                        InvalidTxnStateException.class) != null,
                "commitTransaction failed with %s, want ProducerFenced, InvalidProducerEpoch or InvalidTxnState",
                chain(commitErr));

        Reader rc = reader("timeout-rc", IsolationLevel.READ_COMMITTED, List.of(tp)).pollUntil(2, WAIT).pollFor(SETTLE);
        require(rc.values().equals(values("after", 2)), "read_committed returned %s, want after-0, after-1",
                rc.values());

        // The same transactional id works again with a new producer.
        KafkaProducer<String, String> p2 = txnProducer("timeout-again", txnId, 60000);
        p2.initTransactions();
        p2.beginTransaction();
        require(offsets(sendAll(p2, records(tp, "fresh", 1))).equals(List.of(6L)), "new txn record not at 6");
        p2.commitTransaction();
        rc.pollUntil(3, WAIT).pollFor(SETTLE);
        require(rc.values().equals(concat(values("after", 2), values("fresh", 1))),
                "read_committed returned %s, want after-0, after-1, fresh-0", rc.values());
        Reader ru = reader("timeout-ru", IsolationLevel.READ_UNCOMMITTED, List.of(tp)).pollUntil(6, WAIT).pollFor(SETTLE);
        require(ru.values().equals(concat(values("timed", 3), values("after", 2), values("fresh", 1))),
                "read_uncommitted returned %s", ru.values());
    }

    // ------------------------------------------------------------------ 7: admin

    /**
     * DescribeProducers after an idempotent write (one producer, last sequence 6, no transaction);
     * while a transaction is open on 2 partitions: DescribeTransactions (Ongoing, producer id and
     * epoch, timeout, both partitions), ListTransactions (unfiltered, by state, by producer id),
     * DescribeProducers (the transactional producer with its transaction's first offset); after
     * the commit: CompleteCommit without partitions; an unknown id: TransactionalIdNotFound.
     */
    void adminApis() throws Exception {
        List<TopicPartition> tps = createTopic(name("admin"), 2);
        TopicPartition tp0 = tps.get(0);
        TopicPartition tp1 = tps.get(1);

        sendAll(producer("admin-idem", Map.of()), records(tp0, "idem", 7));
        PartitionProducerState ps0 = get(admin.describeProducers(List.of(tp0)).all()).get(tp0);
        require(ps0 != null && ps0.activeProducers().size() == 1, "describeProducers(p0) = %s, want one producer", ps0);
        ProducerState idem = ps0.activeProducers().get(0);
        require(idem.producerId() >= 0 && idem.producerEpoch() >= 0, "idempotent producer id/epoch %d/%d",
                idem.producerId(), idem.producerEpoch());
        require(idem.lastSequence() == 6, "idempotent producer's last sequence %d, want 6", idem.lastSequence());
        require(idem.currentTransactionStartOffset().isEmpty(), "idempotent producer has a transaction start offset %s",
                idem.currentTransactionStartOffset());
        info("idempotent producer: %s", idem);

        String txnId = name("admin");
        KafkaProducer<String, String> p = txnProducer("admin-txn", txnId, 45000);
        p.initTransactions();
        long before = System.currentTimeMillis();
        p.beginTransaction();
        require(offsets(sendAll(p, records(tp0, "t", 2))).equals(range(7, 9)), "txn records on p0 not at 7, 8");
        require(offsets(sendAll(p, records(tp1, "t", 2))).equals(range(0, 2)), "txn records on p1 not at 0, 1");

        TransactionDescription td = get(admin.describeTransactions(List.of(txnId)).all()).get(txnId);
        info("describeTransactions: %s", td);
        require(td.state() == TransactionState.ONGOING, "state %s, want ONGOING", td.state());
        require(td.producerId() >= 0 && td.producerId() != idem.producerId(), "producer id %d", td.producerId());
        require(td.producerEpoch() >= 0, "producer epoch %d", td.producerEpoch());
        require(td.transactionTimeoutMs() == 45000, "transaction timeout %d ms, want 45000", td.transactionTimeoutMs());
        require(td.topicPartitions().equals(Set.of(tp0, tp1)), "partitions %s, want %s", td.topicPartitions(),
                Set.of(tp0, tp1));
        require(td.transactionStartTimeMs().isPresent()
                        && Math.abs(td.transactionStartTimeMs().getAsLong() - before) < 60_000,
                "transaction start time %s, the transaction began at about %d", td.transactionStartTimeMs(), before);

        Collection<TransactionListing> all = get(admin.listTransactions().all());
        TransactionListing mine = all.stream().filter(l -> l.transactionalId().equals(txnId)).findFirst().orElse(null);
        require(mine != null, "listTransactions (%d ids) does not include %s", all.size(), txnId);
        require(mine.producerId() == td.producerId() && mine.state() == TransactionState.ONGOING,
                "listTransactions says %s, want producer id %d ONGOING", mine, td.producerId());
        Set<String> ongoing = ids(get(admin.listTransactions(new ListTransactionsOptions()
                .filterStates(List.of(TransactionState.ONGOING))).all()));
        require(ongoing.contains(txnId), "listTransactions(ONGOING) %s lacks %s", ongoing, txnId);
        Set<String> completed = ids(get(admin.listTransactions(new ListTransactionsOptions()
                .filterStates(List.of(TransactionState.COMPLETE_COMMIT))).all()));
        require(!completed.contains(txnId), "listTransactions(COMPLETE_COMMIT) includes the ongoing %s", txnId);
        Set<String> byPid = ids(get(admin.listTransactions(new ListTransactionsOptions()
                .filterProducerIds(List.of(td.producerId()))).all()));
        require(byPid.equals(Set.of(txnId)), "listTransactions(producer id %d) = %s, want just %s", td.producerId(),
                byPid, txnId);

        Map<TopicPartition, PartitionProducerState> ps = get(admin.describeProducers(tps).all());
        ProducerState t0 = producer(ps.get(tp0), td.producerId());
        ProducerState t1 = producer(ps.get(tp1), td.producerId());
        require(ps.get(tp0).activeProducers().size() == 2, "describeProducers(p0) %s, want the idempotent and the "
                + "transactional producer", ps.get(tp0));
        require(t0 != null && t1 != null, "describeProducers %s lacks producer id %d", ps, td.producerId());
        require(t0.producerEpoch() == td.producerEpoch(), "p0: epoch %d, describeTransactions says %d",
                t0.producerEpoch(), td.producerEpoch());
        require(t0.currentTransactionStartOffset().equals(java.util.OptionalLong.of(7)),
                "p0: transaction start offset %s, want 7", t0.currentTransactionStartOffset());
        require(t1.currentTransactionStartOffset().equals(java.util.OptionalLong.of(0)),
                "p1: transaction start offset %s, want 0", t1.currentTransactionStartOffset());
        require(t0.lastSequence() == 1 && t1.lastSequence() == 1, "last sequences %d / %d, want 1 / 1",
                t0.lastSequence(), t1.lastSequence());
        info("transactional producer on p0: %s", t0);

        p.commitTransaction();
        eventually(WAIT, () -> {
            TransactionDescription after = get(admin.describeTransactions(List.of(txnId)).all()).get(txnId);
            require(after.state() == TransactionState.COMPLETE_COMMIT && after.topicPartitions().isEmpty(),
                    "after the commit: %s, want COMPLETE_COMMIT without partitions", after);
            require(after.producerId() == td.producerId(), "producer id changed to %d", after.producerId());
            ProducerState t0after = producer(get(admin.describeProducers(List.of(tp0)).all()).get(tp0), td.producerId());
            require(t0after != null && t0after.currentTransactionStartOffset().isEmpty(),
                    "after the commit describeProducers(p0) still shows %s", t0after);
        });

        String unknown = name("never-used");
        try {
            TransactionDescription d = get(admin.describeTransactions(List.of(unknown)).all()).get(unknown);
            throw new AssertionError("describeTransactions of an unknown id returned " + d);
        } catch (ExecutionException e) {
            require(e.getCause() instanceof TransactionalIdNotFoundException,
                    "describeTransactions of an unknown id failed with %s, want TransactionalIdNotFoundException",
                    chain(e.getCause()));
        }
    }

    static Set<String> ids(Collection<TransactionListing> ls) {
        return ls.stream().map(TransactionListing::transactionalId).collect(Collectors.toSet());
    }

    static ProducerState producer(PartitionProducerState ps, long producerId) {
        if (ps == null) {
            return null;
        }
        return ps.activeProducers().stream().filter(s -> s.producerId() == producerId).findFirst().orElse(null);
    }

    // ------------------------------------------------------------------ 8: interleaved transactions

    /**
     * Two transactional producers and a non-transactional one write alternately to one partition:
     * A-0 B-0 P-0 A-1 B-1 P-1 (offsets 0..5). B commits first (marker 6): A is still open, so the LSO
     * stays at 0 and read_committed returns nothing. Then A aborts (marker 7): the LSO moves to 8 and
     * read_committed returns B-0 P-0 B-1 P-1 at 1, 2, 4, 5 (the aborted-transaction list has to name
     * A's producer, not an offset range); read_uncommitted returns all six.
     */
    void interleavedTransactions() throws Exception {
        TopicPartition tp = createTopic(name("interleaved"), 1).get(0);
        KafkaProducer<String, String> a = txnProducer("interleaved-a", name("interleaved-a"), 60000);
        KafkaProducer<String, String> b = txnProducer("interleaved-b", name("interleaved-b"), 60000);
        KafkaProducer<String, String> plain = producer("interleaved-plain", Map.of());
        a.initTransactions();
        b.initTransactions();
        a.beginTransaction();
        b.beginTransaction();
        List<Long> offs = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            for (KafkaProducer<String, String> p : List.of(a, b, plain)) {
                String prefix = p == a ? "A" : p == b ? "B" : "P";
                offs.add(sendAll(p, List.of(new ProducerRecord<>(tp.topic(), tp.partition(), "k", prefix + "-" + i)))
                        .get(0).offset());
            }
        }
        require(offs.equals(range(0, 6)), "interleaved records at offsets %s, want 0..5", offs);

        b.commitTransaction();
        eventually(WAIT, () -> require(latest(tp, IsolationLevel.READ_UNCOMMITTED) == 7,
                "end offset %d after B's commit, want 7", latest(tp, IsolationLevel.READ_UNCOMMITTED)));
        long lso = latest(tp, IsolationLevel.READ_COMMITTED);
        require(lso == 0, "with A still open the LSO is %d, want 0 (A's first offset)", lso);
        Reader rc = reader("interleaved-rc", IsolationLevel.READ_COMMITTED, List.of(tp)).pollFor(Duration.ofSeconds(2));
        require(rc.records.isEmpty(), "with A still open read_committed returned %s", rc.values());

        a.abortTransaction();
        eventually(WAIT, () -> {
            long l = latest(tp, IsolationLevel.READ_COMMITTED);
            long h = latest(tp, IsolationLevel.READ_UNCOMMITTED);
            require(l == 8 && h == 8, "after A's abort LSO %d, end offset %d; want 8, 8", l, h);
        });
        rc.pollUntil(4, WAIT).pollFor(SETTLE);
        require(rc.values().equals(List.of("B-0", "P-0", "B-1", "P-1")),
                "read_committed returned %s, want B-0 P-0 B-1 P-1", rc.values());
        require(rc.offsets(0).equals(List.of(1L, 2L, 4L, 5L)), "read_committed offsets %s, want 1 2 4 5",
                rc.offsets(0));
        Reader ru = reader("interleaved-ru", IsolationLevel.READ_UNCOMMITTED, List.of(tp)).pollUntil(6, WAIT)
                .pollFor(SETTLE);
        require(ru.values().equals(List.of("A-0", "B-0", "P-0", "A-1", "B-1", "P-1")),
                "read_uncommitted returned %s", ru.values());
    }

    // ------------------------------------------------------------------ main

    @Override
    protected void checks() {
        header("");
        check("1. default producer (idempotent, acks=all): 2000 records, each once, in order", this::idempotentDefaultProducer);
        check("2. transactions: commit visible, abort invisible to read_committed, markers take offsets", this::commitAndAbort);
        check("3. open transaction holds the LSO; ListOffsets READ_COMMITTED/UNCOMMITTED; commit releases", this::lastStableOffset);
        check("4. zombie fencing: a second producer with the same transactional.id fences the first", this::zombieFencing);
        check("5. sendOffsetsToTransaction: group offsets only on commit, unchanged on abort", this::sendOffsetsToTransaction);
        check("6. transaction timeout: the server aborts, commit fails, read_committed not stuck", this::transactionTimeout);
        check("7. admin: describeTransactions, listTransactions, describeProducers", this::adminApis);
        check("8. interleaved transactions and plain records on one partition: LSO, aborted list by producer",
                this::interleavedTransactions);
    }

    @Override
    protected void report() {
        for (Map.Entry<String, String> e : observed.entrySet()) {
            System.out.println("observed: " + e.getKey() + ": " + e.getValue());
        }
    }

    public static void main(String[] args) {
        Checks.main("java-txn", "TxnCompat BOOTSTRAP", 1, args, 300, a -> new TxnCompat(a[0]));
    }
}
