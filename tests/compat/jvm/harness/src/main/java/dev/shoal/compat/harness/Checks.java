package dev.shoal.compat.harness;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import java.util.regex.Pattern;

/**
 * The check runner every Java suite is built on: named checks that each pass or fail, one line
 * each ({@code PASS name (N ms)} or {@code FAIL name (N ms): why}), then the failures again and
 * the closing line {@code SUITE: N passed, M failed}. Exit code 1 when a check failed or none
 * passed. A watchdog ends the program after {@code -Dcompat.globalTimeoutSeconds} with the same
 * kind of closing line, so a wedged client cannot hang the caller.
 *
 * <p>System properties: {@code compat.only=REGEX} runs only the checks whose name matches,
 * {@code compat.verbose=true} prints stack traces of failed checks.
 */
public abstract class Checks {

    /** Upper bound for any single client call (futures, polls). */
    public static final Duration CALL_TIMEOUT = Duration.ofSeconds(30);
    public static final boolean VERBOSE = Boolean.getBoolean("compat.verbose");
    static final Pattern ONLY = Pattern.compile(System.getProperty("compat.only", ""));

    /** The name in the closing line, e.g. {@code java-compat}. */
    protected final String suite;
    private volatile int passed;
    private volatile int failed;
    private volatile int skipped;
    private final List<String> failures = new ArrayList<>();

    protected Checks(String suite) {
        this.suite = suite;
    }

    /** A check body, or any step that may throw. */
    public interface Check {
        void run() throws Exception;
    }

    /** Calls {@link #check} for every check, in order. */
    protected abstract void checks() throws Exception;

    /** After every check, whatever happened (close what the check left open). */
    protected void afterCheck() {
    }

    /** After all checks (delete what the suite created). */
    protected void cleanup() {
    }

    /** Extra lines printed before the failures and the closing line. */
    protected void report() {
    }

    public final void check(String name, Check body) {
        if (!ONLY.pattern().isEmpty() && !ONLY.matcher(name).find()) {
            skipped++;
            return;
        }
        long t0 = System.nanoTime();
        try {
            body.run();
            passed++;
            System.out.printf("PASS %s (%d ms)%n", name, (System.nanoTime() - t0) / 1_000_000);
        } catch (Throwable e) {
            failed++;
            Throwable cause = e;
            while ((cause instanceof ExecutionException) && cause.getCause() != null) {
                cause = cause.getCause();
            }
            String msg = chain(cause);
            if (cause instanceof TimeoutException && cause.getMessage() == null) {
                msg = "no result within " + CALL_TIMEOUT.toSeconds() + " s (java.util.concurrent.TimeoutException)";
            }
            synchronized (failures) {
                failures.add(name + ": " + msg);
            }
            System.out.printf("FAIL %s (%d ms): %s%n", name, (System.nanoTime() - t0) / 1_000_000, msg);
            if (VERBOSE) {
                cause.printStackTrace(System.out);
            }
        } finally {
            afterCheck();
        }
        System.out.flush();
    }

    /** Runs the checks, cleans up, reports; returns the exit code. */
    public final int run() {
        try {
            checks();
        } catch (Throwable t) {
            failed++;
            synchronized (failures) {
                failures.add("(suite) " + chain(t));
            }
            System.out.println("FAIL the suite stopped: " + chain(t));
            if (VERBOSE) {
                t.printStackTrace(System.out);
            }
        }
        cleanup();
        report();
        synchronized (failures) {
            for (String f : failures) {
                System.out.println("failed: " + f);
            }
        }
        if (skipped > 0) {
            System.out.printf("%s: %d checks not selected by compat.only%n", suite, skipped);
        }
        System.out.printf("%s: %d passed, %d failed%n", suite, passed, failed);
        System.out.flush();
        return failed == 0 && passed > 0 ? 0 : 1;
    }

    /**
     * The whole program: checks the argument count, starts the global-timeout watchdog, builds the
     * suite from the arguments and runs it, then exits with its code.
     */
    public static void main(String suite, String usage, int nargs, String[] args, long defaultTimeoutSeconds,
            Function<String[], Checks> make) {
        if (args.length != nargs) {
            System.err.println("usage: " + usage);
            System.exit(2);
        }
        long timeoutS = Long.getLong("compat.globalTimeoutSeconds", defaultTimeoutSeconds);
        Checks[] current = {null};
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(timeoutS * 1000);
            } catch (InterruptedException e) {
                return;
            }
            Checks c = current[0];
            System.out.println("FAIL global timeout of " + timeoutS + " s reached");
            System.out.printf("%s: %d passed, %d failed%n", suite, c == null ? 0 : c.passed,
                    c == null ? 1 : c.failed + 1);
            System.out.flush();
            Runtime.getRuntime().halt(1);
        }, "global-timeout");
        watchdog.setDaemon(true);
        watchdog.start();
        int rc;
        try {
            current[0] = make.apply(args);
            rc = current[0].run();
        } catch (Throwable t) {
            t.printStackTrace(System.out);
            System.out.printf("%s: 0 passed, 1 failed%n", suite);
            rc = 1;
        }
        System.exit(rc);
    }

    // ------------------------------------------------------------------ assertions

    public static void info(String fmt, Object... args) {
        System.out.printf("     " + fmt + "%n", args);
    }

    public static void require(boolean cond, String fmt, Object... args) {
        if (!cond) {
            throw new AssertionError(String.format(fmt, args));
        }
    }

    /** Retries an assertion until it holds or the timeout passes (metadata propagation, settling). */
    public static void eventually(Duration timeout, Check body) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            try {
                body.run();
                return;
            } catch (AssertionError | Exception e) {
                if (System.nanoTime() > deadline) {
                    if (e instanceof AssertionError) {
                        throw new AssertionError("after " + timeout.toSeconds() + " s: " + e.getMessage(), e);
                    }
                    throw e;
                }
                Thread.sleep(200);
            }
        }
    }

    /** The future's value, waiting at most {@link #CALL_TIMEOUT}. */
    public static <T> T get(Future<T> f) throws Exception {
        return f.get(CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** Expects the future to fail with exactly this exception type (as its direct cause). */
    public static void expectFailure(Future<?> f, Class<? extends Throwable> type) throws Exception {
        try {
            f.get(CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            require(type.isInstance(c), "expected %s, got %s: %s", type.getSimpleName(),
                    c == null ? "null" : c.getClass().getName(), c == null ? "" : c.getMessage());
            return;
        }
        throw new AssertionError("expected " + type.getSimpleName() + ", but the call succeeded");
    }

    /** Runs the body and requires that it throws an exception of this type (maybe wrapped). */
    public static void expectThrows(Class<? extends Throwable> want, Check body) throws Exception {
        Throwable got = null;
        try {
            body.run();
        } catch (Throwable t) {
            got = t;
        }
        if (findInChain(got, want) == null) {
            throw new AssertionError("wanted " + want.getSimpleName() + ", got " + (got == null ? "nothing" : chain(got)));
        }
    }

    /** "Class: message <- Cause: message ..." for a failure report. */
    public static String chain(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            sb.append(c.getClass().getName()).append(": ").append(c.getMessage());
        }
        return sb.toString();
    }

    /** The first throwable in t's cause chain that is one of the types, or null. */
    @SafeVarargs
    public static Throwable findInChain(Throwable t, Class<? extends Throwable>... types) {
        for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
            for (Class<? extends Throwable> type : types) {
                if (type.isInstance(c)) {
                    return c;
                }
            }
        }
        return null;
    }
}
