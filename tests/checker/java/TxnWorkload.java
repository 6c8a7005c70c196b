import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPidMappingException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * One transactional producer of the checker's workload with the Java client (Kafka 4.x),
 * driven by tests/checker/clients.py's JavaTxnProducer; the same transactions as its
 * librdkafka TxnProducer.
 *
 * <pre>java -cp "KAFKA4_LIBS/*" TxnWorkload.java BOOTSTRAP TRANSACTIONAL_ID TOPIC PARTITIONS SEED NAME</pre>
 *
 * <p>It waits for a line "start" on stdin, then runs transactions of 2-6 records (values
 * {@code txn/NAME/N/I/<pad>}, each to a random partition), about 30 % ended by abort, until
 * stdin reads "stop" or closes: then it finishes the transaction under way and exits. Every
 * event is one JSON object on a line of stdout, written as it happens: begin (with the
 * intent), sent, acked, failed, ending (the commit or abort is asked for), end (committed,
 * aborted or unknown, with the error) and error (initTransactions failed). A fatal error
 * (fenced, ...) ends the transaction as unknown and starts a new producer with the same
 * transactional.id. Logs go to stderr.
 */
public final class TxnWorkload {
    static final String PAD = "x".repeat(64);
    /** stdout, for the JSON lines only: System.out is stderr (the client's logging). */
    static final PrintStream EVENTS =
            new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);

    final Properties conf = new Properties();
    final String topic;
    final int partitions;
    final String name;
    final Random rng;
    final CountDownLatch started = new CountDownLatch(1);
    volatile boolean stopping;

    TxnWorkload(String[] a) {
        conf.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a[0]);
        conf.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, a[1]);
        topic = a[2];
        partitions = Integer.parseInt(a[3]);
        rng = new Random(Long.parseLong(a[4]));
        name = a[5];
        conf.put(ProducerConfig.CLIENT_ID_CONFIG, name);
        conf.put(ProducerConfig.ACKS_CONFIG, "all");
        conf.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        conf.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        conf.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        conf.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "60000");
        conf.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        // initTransactions, commitTransaction and abortTransaction give up after this.
        conf.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        conf.put(ProducerConfig.RECONNECT_BACKOFF_MS_CONFIG, "100");
        conf.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "1000");
        conf.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        conf.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    }

    public static void main(String[] args) throws Exception {
        System.setOut(System.err);  // before any logger is made (log4j's console appender)
        System.setProperty("org.apache.logging.log4j.level",
                System.getProperty("org.apache.logging.log4j.level", "WARN"));
        if (args.length != 6) {
            System.err.println("usage: TxnWorkload BOOTSTRAP TRANSACTIONAL_ID TOPIC PARTITIONS SEED NAME");
            System.exit(2);
        }
        TxnWorkload w = new TxnWorkload(args);
        Thread stdin = new Thread(w::readStdin, "stdin");
        stdin.setDaemon(true);
        stdin.start();
        w.started.await();
        if (!w.stopping) {
            w.run();
        }
        System.exit(0);
    }

    void readStdin() {
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.trim().equals("start")) {
                    started.countDown();
                } else if (line.trim().equals("stop")) {
                    break;
                }
            }
        } catch (Exception e) {
            System.err.println("TxnWorkload: reading stdin: " + e);
        }
        stopping = true;
        started.countDown();
    }

    void run() throws InterruptedException {
        KafkaProducer<String, String> p = newProducer();
        for (int n = 0; p != null && !stopping; n++) {
            String intent = rng.nextDouble() < 0.3 ? "abort" : "commit";
            emit("{\"event\":\"begin\",\"txn\":" + n + ",\"intent\":\"" + intent + "\"}");
            boolean ending = false;
            boolean fatal = false;
            try {
                p.beginTransaction();
                int count = 2 + rng.nextInt(5);
                for (int i = 0; i < count; i++) {
                    String value = "txn/" + name + "/" + n + "/" + i + "/" + PAD.substring(0, (n + i) % 64);
                    emit("{\"event\":\"sent\",\"txn\":" + n + ",\"value\":" + quote(value) + "}");
                    ProducerRecord<String, String> r =
                            new ProducerRecord<>(topic, rng.nextInt(partitions), null, value);
                    p.send(r, (md, e) -> {
                        if (e == null) {
                            emit("{\"event\":\"acked\",\"value\":" + quote(value) + ",\"partition\":"
                                    + md.partition() + ",\"offset\":" + (md.hasOffset() ? md.offset() : -1) + "}");
                        } else {
                            emit("{\"event\":\"failed\",\"value\":" + quote(value) + error(e) + "}");
                        }
                    });
                }
                emit("{\"event\":\"ending\",\"txn\":" + n + "}");
                ending = true;
                end(p, intent.equals("commit"));
                emit("{\"event\":\"end\",\"txn\":" + n + ",\"outcome\":\""
                        + (intent.equals("commit") ? "committed" : "aborted") + "\"}");
            } catch (KafkaException | IllegalStateException e) {
                if (!ending) {
                    emit("{\"event\":\"ending\",\"txn\":" + n + "}");
                }
                fatal = isFatal(e) || !tryAbort(p, n, e);
                if (fatal) {
                    emit("{\"event\":\"end\",\"txn\":" + n + ",\"outcome\":\"unknown\"" + error(e) + "}");
                }
            }
            if (fatal) {
                p.close(Duration.ZERO);
                p = newProducer();
            }
            Thread.sleep(100);
        }
        if (p != null) {
            p.close(Duration.ofSeconds(10));
        }
    }

    /** A producer with initTransactions done, retried each second; null when stopping. */
    KafkaProducer<String, String> newProducer() throws InterruptedException {
        while (!stopping) {
            KafkaProducer<String, String> p = new KafkaProducer<>(conf);
            try {
                p.initTransactions();
                return p;
            } catch (KafkaException e) {
                emit("{\"event\":\"error\",\"what\":\"initTransactions\"" + error(e) + "}");
                p.close(Duration.ZERO);
                Thread.sleep(1000);
            }
        }
        return null;
    }

    /** commitTransaction / abortTransaction, called again (up to 5 times) after a timeout. */
    static void end(KafkaProducer<String, String> p, boolean commit) {
        RetriableException last = null;
        for (int i = 0; i < 5; i++) {
            try {
                if (commit) {
                    p.commitTransaction();
                } else {
                    p.abortTransaction();
                }
                return;
            } catch (RetriableException e) {
                last = e;
            }
        }
        throw new IllegalStateException("ending the transaction kept timing out", last);
    }

    /** After a non-fatal error: abort. Returns whether the abort was confirmed. */
    boolean tryAbort(KafkaProducer<String, String> p, int n, Exception err) {
        try {
            p.abortTransaction();
        } catch (KafkaException | IllegalStateException e) {
            return false;
        }
        emit("{\"event\":\"end\",\"txn\":" + n + ",\"outcome\":\"aborted\"" + error(err) + "}");
        return true;
    }

    /** Whether the producer cannot go on after `e` (KIP-1050's "application recoverable"
     * and configuration errors, or one of these wrapped), and must be replaced. */
    static boolean isFatal(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ProducerFencedException || t instanceof InvalidPidMappingException
                    || t instanceof OutOfOrderSequenceException || t instanceof InvalidConfigurationException
                    || t instanceof IllegalStateException) {
                return true;
            }
        }
        return false;
    }

    /** ,"error":CLASS,"message":TEXT of what `e` wraps (the client's KafkaException and
     * IllegalStateException often only say "in an error state" and carry the cause). */
    static String error(Throwable e) {
        while ((e.getClass() == KafkaException.class || e instanceof IllegalStateException
                || e instanceof ExecutionException) && e.getCause() != null) {
            e = e.getCause();
        }
        return ",\"error\":" + quote(e.getClass().getName()) + ",\"message\":" + quote(String.valueOf(e.getMessage()));
    }

    static synchronized void emit(String json) {
        EVENTS.println(json);
        EVENTS.flush();
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
