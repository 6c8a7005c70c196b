// A consumer-group member of the KIP-848 protocol (group.protocol=consumer) on the Java
// 4.x client, driven by run.py; with GROUP_PROTOCOL=classic in its environment, a
// member of the classic protocol instead. Prints one line per event on stdout:
//   assigned <p,p,...>         after each change of its partitions (sorted, "-" if none)
//   rec <partition> <offset> <value>
// It commits synchronously after each poll that returned records (a commit the group
// refuses, as a classic member's may be during a rebalance, is logged and left to the
// next one); SIGTERM makes it
// close(), which leaves the group (epoch -1, or -2 for a static member).
//
//   java -cp 'KAFKA4_LIBS/*' Member.java BOOTSTRAP GROUP TOPIC INSTANCE_ID|-
import java.time.Duration;
import java.util.*;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.StringDeserializer;

public class Member {
    static final SortedSet<Integer> owned = new TreeSet<>();

    static synchronized void report() {
        StringBuilder sb = new StringBuilder("assigned ");
        if (owned.isEmpty()) sb.append('-');
        String sep = "";
        for (int p : owned) { sb.append(sep).append(p); sep = ","; }
        System.out.println(sb);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, args[1]);
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, System.getenv().getOrDefault("GROUP_PROTOCOL", "consumer"));
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-" + args[3]);
        if (!args[3].equals("-")) props.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, args[3]);
        if (args.length > 4) props.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, args[4]);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props);
        AtomicBoolean stop = new AtomicBoolean();
        Thread main = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stop.set(true);
            consumer.wakeup();
            try { main.join(20000); } catch (InterruptedException e) { }
        }));
        consumer.subscribe(List.of(args[2]), new ConsumerRebalanceListener() {
            public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                // Commit what was processed before giving partitions up.
                try { consumer.commitSync(); } catch (Exception e) { System.err.println("commit on revoke: " + e); }
                synchronized (Member.class) { for (TopicPartition tp : ps) owned.remove(tp.partition()); }
                report();
            }
            public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                synchronized (Member.class) { for (TopicPartition tp : ps) owned.add(tp.partition()); }
                report();
            }
            public void onPartitionsLost(Collection<TopicPartition> ps) {
                synchronized (Member.class) { for (TopicPartition tp : ps) owned.remove(tp.partition()); }
                report();
            }
        });
        try {
            while (!stop.get()) {
                ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> r : recs) {
                    System.out.println("rec " + r.partition() + " " + r.offset() + " " + r.value());
                }
                System.out.flush();
                // A commit refused because the group moved on (a classic member whose
                // generation is behind) is retried by the next poll's commit; what it
                // covered is consumed again, as any at-least-once application sees.
                if (!recs.isEmpty()) {
                    try { consumer.commitSync(); }
                    catch (CommitFailedException | org.apache.kafka.common.errors.RebalanceInProgressException e) {
                        System.err.println("commit: " + e);
                    }
                }
            }
        } catch (WakeupException e) {
            // shutting down
        } finally {
            consumer.close(CloseOptions.timeout(Duration.ofSeconds(10)));
            System.out.println("closed");
            System.out.flush();
        }
    }
}
