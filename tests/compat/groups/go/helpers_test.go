// Package groups holds consumer-group compatibility tests that drive a
// Kafka-protocol server with franz-go (kgo + kadm). The server is named by
// SHOAL_BOOTSTRAP (host:port); it may be Shoal or Apache Kafka, and every
// check must pass against Kafka.
//
// The server is assumed to have topic auto-creation off and to implement the
// classic consumer-group protocol; producers keep franz-go's default
// idempotent writes.
package groups

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	opTimeout        = 30 * time.Second // any single client operation
	waitTimeout      = 60 * time.Second // any wait for a group to settle or records to arrive
	sessionTimeout   = 6 * time.Second
	heartbeatTimeout = 1 * time.Second
)

var (
	runID     = randomHex(4)
	nameCount atomic.Int64
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func uniqueName(prefix string) string {
	return fmt.Sprintf("compat-go-groups-%s-%s-%d", prefix, runID, nameCount.Add(1))
}

var unreachable error

func TestMain(m *testing.M) {
	if addr := os.Getenv("SHOAL_BOOTSTRAP"); addr != "" {
		unreachable = precheck(addr)
	}
	os.Exit(m.Run())
}

func precheck(addr string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTimeout(10*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("no usable Kafka API at %s: %w", addr, err)
	}
	return nil
}

func bootstrap(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("SHOAL_BOOTSTRAP")
	if addr == "" {
		t.Fatal("SHOAL_BOOTSTRAP (host:port of the broker under test) is not set")
	}
	if unreachable != nil {
		t.Fatal(unreachable)
	}
	return addr
}

func opCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// baseOpts are shared by every client. SHOAL_COMPAT_DEBUG=1 turns on
// franz-go's debug log (to stderr).
func baseOpts(t *testing.T, clientID string) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(bootstrap(t)),
		kgo.ClientID(clientID),
		kgo.DialTimeout(10 * time.Second),
		kgo.RetryTimeout(opTimeout),
		kgo.RequestRetries(10),
		kgo.MetadataMinAge(200 * time.Millisecond),
	}
	if os.Getenv("SHOAL_COMPAT_DEBUG") != "" {
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, func() string {
			return time.Now().Format("15:04:05.000 ") + clientID + " "
		})))
	}
	return opts
}

func newAdmin(t *testing.T) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(baseOpts(t, "compat-go-groups-admin")...)
	if err != nil {
		t.Fatalf("new admin client: %v", err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(opTimeout / time.Millisecond))
	return adm
}

// createTopic creates a topic (replication factor 1), waits until every
// partition has a leader, and deletes it when the test ends.
func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32) {
	t.Helper()
	resp, err := adm.CreateTopic(opCtx(t), partitions, 1, nil, topic)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("create topic %s: %v (%s)", topic, resp.Err, resp.ErrMessage)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		adm.DeleteTopics(ctx, topic)
	})
	waitUntil(t, waitTimeout, fmt.Sprintf("topic %s with %d led partitions", topic, partitions), func() (bool, string) {
		tds, err := adm.ListTopics(opCtx(t), topic)
		if err != nil {
			return false, err.Error()
		}
		td, ok := tds[topic]
		if !ok || td.Err != nil {
			return false, fmt.Sprintf("topic missing: %v", td.Err)
		}
		if len(td.Partitions) != int(partitions) {
			return false, fmt.Sprintf("%d partitions", len(td.Partitions))
		}
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false, fmt.Sprintf("partition %d: leader %d err %v", p.Partition, p.Leader, p.Err)
			}
		}
		return true, ""
	})
}

// waitUntil polls cond every 200ms for up to timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, last)
}

// produceKeyed produces keyed records start..end-1 (key key-I, value
// v-RUN-I) with the default (murmur2 key hash) partitioner and notes where
// each landed.
func produceKeyed(t *testing.T, topic string, l *ledger, start, end int) {
	t.Helper()
	cl, err := kgo.NewClient(append(baseOpts(t, "compat-go-groups-producer"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProduceRequestTimeout(15*time.Second),
		kgo.RecordDeliveryTimeout(opTimeout),
	)...)
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, end-start)
	for i := start; i < end; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("key-%d", i)),
			Value: []byte(fmt.Sprintf("v-%s-%d", runID, i))})
	}
	res := cl.ProduceSync(opCtx(t), recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for _, r := range res {
		l.produced(r.Record.Partition, r.Record.Offset, string(r.Record.Value))
	}
}

// ledger: what was produced, consumed and committed, in one global order.
// Loss: every produced record must be consumed at least once with its value.
// Duplicates: a record consumed again is allowed only if no commit covering
// it (offset > its offset) had succeeded before, i.e. only records after the
// previous owner's last successful commit.
type ledger struct {
	mu       sync.Mutex
	seq      int64
	prod     map[[2]int64]string
	consumed map[[2]int64][]consumption
	commits  map[int32][][2]int64 // {offset, seq}
	byMember map[string]int
	problems []string
}

type consumption struct {
	seq   int64
	who   string
	value string
}

func newLedger() *ledger {
	return &ledger{prod: map[[2]int64]string{}, consumed: map[[2]int64][]consumption{},
		commits: map[int32][][2]int64{}, byMember: map[string]int{}}
}

func (l *ledger) produced(p int32, off int64, value string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prod[[2]int64{int64(p), off}] = value
}

func (l *ledger) addConsumed(who string, p int32, off int64, value string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.byMember[who]++
	k := [2]int64{int64(p), off}
	seen := l.consumed[k]
	if len(seen) > 0 {
		for _, c := range l.commits[p] {
			if c[0] > off && c[1] < l.seq {
				l.problem(fmt.Sprintf("%s consumed %d@%d again (first by %s) although offset %d was committed before",
					who, p, off, seen[0].who, c[0]))
				break
			}
		}
	}
	l.consumed[k] = append(seen, consumption{l.seq, who, value})
}

func (l *ledger) addCommitted(offsets map[int32]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	for p, off := range offsets {
		l.commits[p] = append(l.commits[p], [2]int64{off, l.seq})
	}
}

func (l *ledger) problem(s string) {
	if len(l.problems) < 20 {
		l.problems = append(l.problems, s)
	}
}

func (l *ledger) consumedBy(who string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byMember[who]
}

func (l *ledger) missing() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k := range l.prod {
		if _, ok := l.consumed[k]; !ok {
			n++
		}
	}
	return n
}

func (l *ledger) duplicates() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, cs := range l.consumed {
		n += len(cs) - 1
	}
	return n
}

func (l *ledger) verify(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	problems := append([]string(nil), l.problems...)
	bad := 0
	for k, cs := range l.consumed {
		want, ok := l.prod[k]
		for _, c := range cs {
			if !ok || c.value != want {
				if bad++; bad <= 5 {
					problems = append(problems, fmt.Sprintf("%s consumed %d@%d value %q, produced %q", c.who, k[0], k[1], c.value, want))
				}
			}
		}
	}
	var miss []string
	for k := range l.prod {
		if _, ok := l.consumed[k]; !ok {
			miss = append(miss, fmt.Sprintf("%d@%d", k[0], k[1]))
		}
	}
	if len(miss) > 0 {
		sort.Strings(miss)
		if len(miss) > 5 {
			miss = append(miss[:5], "...")
		}
		problems = append(problems, fmt.Sprintf("produced records never consumed (e.g.): %s", strings.Join(miss, " ")))
	}
	if len(problems) > 0 {
		t.Fatalf("ledger: %s", strings.Join(problems, "; "))
	}
}
