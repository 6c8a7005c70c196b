package dev.shoal.compat.security;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupAuthorizationException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.errors.TransactionalIdAuthorizationException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

import dev.shoal.compat.harness.Checks;

/**
 * Security checks with the Apache Kafka Java client, shared by the Shoal and the Kafka
 * mode of tests/compat/security/run.sh (which creates the users, topics and ACLs first).
 *
 * <p>Args: SASL_SSL_BOOTSTRAP SSL_BOOTSTRAP CERT_DIR RECORDS. Produces RECORDS records as alice
 * and reads them back over SASL_SSL with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN and over mutual
 * TLS; a wrong password must fail with SaslAuthenticationException; then the ACL checks on
 * topic t1 / group g1. Prints `PASS NAME (N ms)` or `FAIL NAME (N ms): why` per check, last line
 * `java-security: N passed, M failed`; exit code 1 when any failed.
 */
public final class SecurityCompat extends Checks {
  private static final String STORE_PASSWORD = "changeit";
  private static final Duration WAIT = Duration.ofSeconds(30);

  private final String saslBootstrap;
  private final String sslBootstrap;
  private final String certs;
  private final int records;

  private SecurityCompat(String saslBootstrap, String sslBootstrap, String certs, int records) {
    super("java-security");
    this.saslBootstrap = saslBootstrap;
    this.sslBootstrap = sslBootstrap;
    this.certs = certs;
    this.records = records;
  }

  public static void main(String[] args) {
    Checks.main(
        "java-security",
        "SecurityCompat SASL_SSL_BOOTSTRAP SSL_BOOTSTRAP CERT_DIR RECORDS",
        4,
        args,
        600,
        a -> new SecurityCompat(a[0], a[1], a[2], Integer.parseInt(a[3])));
  }

  private Properties sasl(String mechanism, String user, String password) {
    Properties p = new Properties();
    p.put("bootstrap.servers", saslBootstrap);
    p.put("security.protocol", "SASL_SSL");
    p.put("sasl.mechanism", mechanism);
    String module =
        mechanism.equals("PLAIN")
            ? "org.apache.kafka.common.security.plain.PlainLoginModule"
            : "org.apache.kafka.common.security.scram.ScramLoginModule";
    p.put(
        "sasl.jaas.config",
        module + " required username=\"" + user + "\" password=\"" + password + "\";");
    trust(p);
    return p;
  }

  private Properties mtls(String user) {
    Properties p = new Properties();
    p.put("bootstrap.servers", sslBootstrap);
    p.put("security.protocol", "SSL");
    p.put("ssl.keystore.type", "PKCS12");
    p.put("ssl.keystore.location", certs + "/" + user + ".p12");
    p.put("ssl.keystore.password", STORE_PASSWORD);
    p.put("ssl.key.password", STORE_PASSWORD);
    trust(p);
    return p;
  }

  private void trust(Properties p) {
    p.put("ssl.truststore.type", "PKCS12");
    p.put("ssl.truststore.location", certs + "/truststore.p12");
    p.put("ssl.truststore.password", STORE_PASSWORD);
  }

  private static KafkaProducer<String, String> producer(Properties base) {
    Properties p = new Properties();
    p.putAll(base);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
  }

  private static KafkaConsumer<String, String> consumer(Properties base, String group) {
    Properties p = new Properties();
    p.putAll(base);
    if (group != null) {
      p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    }
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
  }

  /** Produces `records` records to `topic` and reads them back in order within group `group`. */
  private void roundTrip(Properties base, String topic, String group) throws Exception {
    try (KafkaProducer<String, String> producer = producer(base)) {
      // The first record alone, so a producer that cannot write fails once, not per record.
      producer.send(new ProducerRecord<>(topic, "k0", "v0")).get();
      List<java.util.concurrent.Future<?>> acks = new ArrayList<>();
      for (int i = 1; i < records; i++) {
        acks.add(producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
      }
      for (java.util.concurrent.Future<?> f : acks) {
        f.get();
      }
    }
    List<String> got = new ArrayList<>();
    try (KafkaConsumer<String, String> consumer = consumer(base, group)) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + WAIT.toNanos();
      while (got.size() < records && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
          got.add(r.value());
        }
      }
      consumer.commitSync();
    }
    require(got.size() == records, "read %d of %d records", got.size(), records);
    for (int i = 0; i < records; i++) {
      require(got.get(i).equals("v" + i), "record %d is %s", i, got.get(i));
    }
  }

  private Set<String> listTopics(Properties base) throws ExecutionException, InterruptedException {
    Properties p = new Properties();
    p.putAll(base);
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    try (Admin admin = Admin.create(p)) {
      return new HashSet<>(admin.listTopics().names().get());
    }
  }

  @Override
  protected void checks() {
    String[][] mechs = {
      {"SCRAM-SHA-256", "scram256"}, {"SCRAM-SHA-512", "scram512"}, {"PLAIN", "plain"}
    };
    for (String[] m : mechs) {
      check(
          "SASL_SSL " + m[0] + " produce and consume " + records,
          () ->
              roundTrip(
                  sasl(m[0], "alice", "alice-secret"),
                  "sec-java-" + m[1],
                  "sec-java-" + m[1]));
    }
    check(
        "mutual TLS produce and consume " + records,
        () -> roundTrip(mtls("alice"), "sec-java-mtls", "sec-java-mtls"));
    for (String[] m : mechs) {
      check(
          "SASL_SSL " + m[0] + " wrong password: SaslAuthenticationException",
          () ->
              expectThrows(
                  SaslAuthenticationException.class,
                  () -> listTopics(sasl(m[0], "alice", "not-alices-password"))));
    }

    // ACLs (run.sh): alice may Read t1 and group g1; bob is denied everything on t1.
    Properties alice = sasl("SCRAM-SHA-256", "alice", "alice-secret");
    Properties bob = sasl("SCRAM-SHA-256", "bob", "bob-secret");
    check(
        "ACL: alice reads t1 in group g1",
        () -> {
          try (KafkaConsumer<String, String> c = consumer(alice, "g1")) {
            c.subscribe(List.of("t1"));
            int n = 0;
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (n < 10 && System.nanoTime() < deadline) {
              n += c.poll(Duration.ofMillis(500)).count();
            }
            require(n == 10, "alice read %d of t1's 10 records", n);
          }
        });
    check(
        "ACL: bob's consumer gets TopicAuthorizationException and no records",
        () -> {
          try (KafkaConsumer<String, String> c = consumer(bob, null)) {
            TopicPartition tp = new TopicPartition("t1", 0);
            c.assign(List.of(tp));
            c.seek(tp, 0);
            int[] seen = {0};
            expectThrows(
                TopicAuthorizationException.class,
                () -> {
                  long deadline = System.nanoTime() + WAIT.toNanos();
                  while (System.nanoTime() < deadline) {
                    seen[0] += c.poll(Duration.ofMillis(500)).count();
                  }
                });
            require(seen[0] == 0, "bob read %d records of t1", seen[0]);
          }
        });
    check(
        "ACL: bob's metadata does not list t1; alice's does",
        () -> {
          Set<String> bobs = listTopics(bob);
          require(!bobs.contains("t1"), "bob sees t1 in %s", bobs);
          Set<String> alices = listTopics(alice);
          require(alices.contains("t1"), "alice does not see t1 in %s", alices);
        });
    check(
        "ACL: alice without Read on group g2 gets GroupAuthorizationException",
        () -> {
          try (KafkaConsumer<String, String> c = consumer(alice, "g2")) {
            c.subscribe(List.of("t1"));
            expectThrows(
                GroupAuthorizationException.class,
                () -> {
                  long deadline = System.nanoTime() + WAIT.toNanos();
                  while (System.nanoTime() < deadline) {
                    c.poll(Duration.ofMillis(500));
                  }
                });
          }
        });
    check(
        "ACL: transactional producer without Write on its id: TransactionalIdAuthorizationException",
        () -> {
          Properties p = new Properties();
          p.putAll(alice);
          p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "tx-denied");
          try (KafkaProducer<String, String> producer = producer(p)) {
            expectThrows(TransactionalIdAuthorizationException.class, producer::initTransactions);
          }
        });
  }
}
