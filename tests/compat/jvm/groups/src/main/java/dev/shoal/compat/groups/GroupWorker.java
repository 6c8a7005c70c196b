package dev.shoal.compat.groups;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Set;
import java.util.StringJoiner;

import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

/**
 * A group member in its own JVM, so the test can kill it with SIGKILL.
 *
 * <p>Usage: {@code GroupWorker BOOTSTRAP TOPIC GROUP NAME}. Reports on stdout, one line each:
 * {@code REC partition offset value}, {@code COMMIT p=o,p=o}, {@code STATE generation p,p memberId}
 * (when the assignment or generation changes), {@code EVENT text}, and {@code CLOSED} or
 * {@code FAILED reason} at the end. It stops (committing and leaving the group) when stdin says
 * {@code STOP} or reaches end of file (its parent is gone), and halts after
 * {@code compat.workerMaxSeconds} whatever happens.
 */
public final class GroupWorker {

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: GroupWorker BOOTSTRAP TOPIC GROUP NAME");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        String group = args[2];
        String name = args[3];
        PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false,
                StandardCharsets.UTF_8);

        long maxSeconds = Long.getLong("compat.workerMaxSeconds", 300);
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(maxSeconds * 1000);
            } catch (InterruptedException e) {
                return;
            }
            System.err.println("GroupWorker " + name + ": halting after " + maxSeconds + " s");
            Runtime.getRuntime().halt(3);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();

        GroupMember.Sink sink = new GroupMember.Sink() {
            Set<TopicPartition> lastAssignment;
            int lastGeneration = Integer.MIN_VALUE;

            @Override
            public void consumed(TopicPartition tp, long offset, String value) {
                synchronized (out) {
                    out.println("REC " + tp.partition() + " " + offset + " " + value);
                }
            }

            @Override
            public void committed(Map<TopicPartition, OffsetAndMetadata> offsets) {
                StringJoiner j = new StringJoiner(",");
                offsets.forEach((tp, om) -> j.add(tp.partition() + "=" + om.offset()));
                synchronized (out) {
                    out.println("COMMIT " + j);
                    out.flush();
                }
            }

            @Override
            public void state(Set<TopicPartition> assignment, int generation, String memberId) {
                if (assignment.equals(lastAssignment) && generation == lastGeneration) {
                    synchronized (out) {
                        out.flush();
                    }
                    return;
                }
                lastAssignment = assignment;
                lastGeneration = generation;
                StringJoiner j = new StringJoiner(",");
                for (int p : GroupMember.sorted(assignment)) {
                    j.add(Integer.toString(p));
                }
                synchronized (out) {
                    out.println("STATE " + generation + " " + (assignment.isEmpty() ? "-" : j.toString()) + " "
                            + (memberId.isEmpty() ? "-" : memberId));
                    out.flush();
                }
            }

            @Override
            public void event(String what) {
                synchronized (out) {
                    out.println("EVENT " + what.replace('\n', ' '));
                    out.flush();
                }
            }
        };

        GroupMember m = new GroupMember(name, topic, GroupsCompat.consumerProps(bootstrap, group, name,
                Map.of(org.apache.kafka.clients.consumer.ConsumerConfig.MAX_POLL_RECORDS_CONFIG,
                        System.getProperty("compat.maxPollRecords", "100"))), sink);
        m.pauseMs = Integer.getInteger("compat.pollPauseMs", 0);
        Thread stdin = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.trim().equals("STOP")) {
                        break;
                    }
                }
            } catch (Exception ignored) {
                // treat like end of file
            }
            m.stopRequested = true;
        }, "stdin");
        stdin.setDaemon(true);
        stdin.start();

        m.run();
        synchronized (out) {
            if (m.error != null) {
                out.println("FAILED " + m.error.toString().replace('\n', ' '));
            } else {
                out.println("CLOSED");
            }
            out.flush();
        }
        System.exit(m.error != null ? 1 : 0);
    }
}
