package dev.shoal.compat.lostack;

import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Producer side of tests/compat/lost-ack: writes RECORDS numbered records (key = value =
 * the number, partition = number % PARTITIONS) through the lost-ack proxy, in small paced
 * bursts so that there are many Produce requests, up to 5 in flight per connection.
 *
 *   LostAckProducer BOOTSTRAP TOPIC PARTITIONS RECORDS idempotent|plain
 *
 * idempotent: the Java client's default configuration (enable.idempotence=true, acks=all);
 * plain: enable.idempotence=false, acks=all, retries=MAX (what duplicates look like).
 * Prints one line "delivered=N failed=M first_error=..." and exits 0 (2 on bad arguments).
 */
public final class LostAckProducer {
    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: LostAckProducer BOOTSTRAP TOPIC PARTITIONS RECORDS idempotent|plain");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = Integer.parseInt(args[2]);
        int records = Integer.parseInt(args[3]);
        boolean idempotent = args[4].equals("idempotent");

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "lost-ack-java-" + args[4]);
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        props.put(ProducerConfig.RECONNECT_BACKOFF_MS_CONFIG, "50");
        props.put(ProducerConfig.RETRY_BACKOFF_MS_CONFIG, "50");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "90000");
        if (!idempotent) {
            props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
            props.put(ProducerConfig.ACKS_CONFIG, "all");
            props.put(ProducerConfig.RETRIES_CONFIG, Integer.toString(Integer.MAX_VALUE));
        }
        // (idempotent: nothing else set -- the 3.x and 4.x defaults are enable.idempotence=true, acks=all)

        AtomicLong delivered = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        AtomicReference<String> firstError = new AtomicReference<>("none");
        long start = System.nanoTime();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < records; i++) {
                String n = Integer.toString(i);
                producer.send(new ProducerRecord<>(topic, i % partitions, n, n), (md, err) -> {
                    if (err == null) {
                        delivered.incrementAndGet();
                    } else {
                        failed.incrementAndGet();
                        firstError.compareAndSet("none", err.toString().replace('\n', ' '));
                    }
                });
                if (i % 25 == 24) {
                    TimeUnit.MILLISECONDS.sleep(10);
                }
            }
            producer.flush();
        }
        System.out.printf("delivered=%d failed=%d seconds=%.1f first_error=%s%n", delivered.get(),
                failed.get(), (System.nanoTime() - start) / 1e9, firstError.get());
    }
}
