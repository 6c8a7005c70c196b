package dev.shoal.compat.harness;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.utils.AppInfoParser;

/**
 * A suite against one plain bootstrap address: an admin client, names unique to this run
 * ({@code PREFIX-what-RUNID}), and the topics and groups it created, deleted at the end unless
 * {@code -Dcompat.keepTopics=true}.
 */
public abstract class Suite extends Checks {

    public final String bootstrap;
    public final String runId;
    public final Admin admin;
    /** Prefix of every topic, group and transactional id of this suite, e.g. {@code shoal-txn}. */
    private final String namePrefix;
    protected final List<String> createdTopics = new ArrayList<>();
    protected final List<String> createdGroups = new ArrayList<>();

    protected Suite(String suite, String namePrefix, String bootstrap) {
        super(suite);
        this.bootstrap = bootstrap;
        this.namePrefix = namePrefix;
        this.runId = UUID.randomUUID().toString().substring(0, 8);
        this.admin = Clients.admin(bootstrap, "shoal-" + suite + "-admin");
    }

    /** The first line of the suite's output: client version, bootstrap, run id and extras. */
    protected void header(String extra) {
        System.out.printf("%s: kafka-clients %s, bootstrap %s, run id %s%s%n", suite, AppInfoParser.getVersion(),
                bootstrap, runId, extra.isEmpty() ? "" : ", " + extra);
    }

    /** A name unique to this run. */
    public String name(String what) {
        return namePrefix + "-" + what + "-" + runId;
    }

    /** A group name unique to this run, deleted at the end. */
    public String newGroup(String what) {
        String g = name(what);
        createdGroups.add(g);
        return g;
    }

    public List<TopicPartition> createTopic(String name, int partitions) throws Exception {
        return createTopic(name, partitions, Map.of());
    }

    /**
     * Creates a topic (replication factor 1) and waits until metadata shows every partition with
     * a leader (Kafka propagates asynchronously); returns its partitions. Deleted at the end.
     */
    public List<TopicPartition> createTopic(String name, int partitions, Map<String, String> configs)
            throws Exception {
        get(admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1).configs(configs))).all());
        createdTopics.add(name);
        eventually(Duration.ofSeconds(15), () -> {
            TopicDescription d = get(admin.describeTopics(List.of(name)).allTopicNames()).get(name);
            require(d.partitions().size() == partitions, "topic %s has %d partitions, want %d",
                    name, d.partitions().size(), partitions);
            for (TopicPartitionInfo pi : d.partitions()) {
                require(pi.leader() != null && !pi.leader().isEmpty(), "partition %d of %s has no leader",
                        pi.partition(), name);
            }
        });
        return IntStream.range(0, partitions).mapToObj(i -> new TopicPartition(name, i)).collect(Collectors.toList());
    }

    /** Deletes the groups this run created (override to remove leftover members first). */
    protected void deleteGroups(Collection<String> groups) throws Exception {
        admin.deleteConsumerGroups(groups).all().get(30, TimeUnit.SECONDS);
    }

    @Override
    protected void cleanup() {
        if (!Boolean.getBoolean("compat.keepTopics")) {
            try {
                if (!createdGroups.isEmpty()) {
                    deleteGroups(createdGroups);
                }
            } catch (Exception e) {
                System.out.println("note: could not delete test groups: " + e);
            }
            try {
                if (!createdTopics.isEmpty()) {
                    admin.deleteTopics(createdTopics).all().get(30, TimeUnit.SECONDS);
                }
            } catch (Exception e) {
                System.out.println("note: could not delete test topics: " + e);
            }
        }
        try {
            admin.close(Duration.ofSeconds(5));
        } catch (Exception ignored) {
            // best effort
        }
    }
}
