package dev.shoal.compat.txn;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

import dev.shoal.compat.harness.Clients;

/**
 * A consumer without a group ({@code assign()}, from the beginning) with one isolation level that
 * collects everything it is given, in order. Tests poll it until they have what they expect and
 * then a little longer, so records that must not be returned have a chance to show up.
 */
final class Reader implements AutoCloseable {

    final KafkaConsumer<String, String> consumer;
    final IsolationLevel isolation;
    final List<ConsumerRecord<String, String>> records = new ArrayList<>();

    Reader(String bootstrap, String clientId, IsolationLevel isolation, Collection<TopicPartition> tps) {
        this.isolation = isolation;
        Properties p = Clients.consumer(bootstrap, clientId);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation.toString().toLowerCase(Locale.ROOT));
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "200");
        consumer = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
        consumer.assign(tps);
        consumer.seekToBeginning(tps);
    }

    /** Polls until at least {@code n} records in all were returned, or {@code max} passed. */
    Reader pollUntil(int n, Duration max) {
        long deadline = System.nanoTime() + max.toNanos();
        while (records.size() < n && System.nanoTime() < deadline) {
            pollOnce();
        }
        return this;
    }

    /** Polls for {@code d}, whatever comes (records that must not come should show up here). */
    Reader pollFor(Duration d) {
        long deadline = System.nanoTime() + d.toNanos();
        while (System.nanoTime() < deadline) {
            pollOnce();
        }
        return this;
    }

    private void pollOnce() {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(100))) {
            records.add(r);
        }
    }

    /** Values in the order they were returned. */
    List<String> values() {
        return records.stream().map(ConsumerRecord::value).collect(Collectors.toList());
    }

    /** Values of one partition, in the order they were returned. */
    List<String> values(int partition) {
        return records.stream().filter(r -> r.partition() == partition).map(ConsumerRecord::value)
                .collect(Collectors.toList());
    }

    /** Offsets of one partition, in the order they were returned. */
    List<Long> offsets(int partition) {
        return records.stream().filter(r -> r.partition() == partition).map(ConsumerRecord::offset)
                .collect(Collectors.toList());
    }

    @Override
    public void close() {
        consumer.close(CloseOptions.timeout(Duration.ofSeconds(5)));
    }
}
