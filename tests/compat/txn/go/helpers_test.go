// Package txn holds transaction compatibility tests that drive a
// Kafka-protocol server with franz-go (kgo + kadm). The server is named by
// SHOAL_BOOTSTRAP (host:port); it may be Shoal or Apache Kafka, and every
// check must pass against Kafka.
//
// The server is assumed to have topic auto-creation off and to implement the
// idempotent producer, transactions and consumer groups.
package txn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	opTimeout   = 30 * time.Second        // any single client operation
	waitTimeout = 60 * time.Second        // any wait for records to arrive or state to settle
	settle      = 1500 * time.Millisecond // how long a reader keeps polling after it has what it expects
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
	return fmt.Sprintf("compat-go-txn-%s-%s-%d", prefix, runID, nameCount.Add(1))
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

func newClient(t *testing.T, clientID string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(baseOpts(t, clientID), opts...)...)
	if err != nil {
		t.Fatalf("new client %s: %v", clientID, err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newAdmin(t *testing.T) *kadm.Client {
	t.Helper()
	adm := kadm.NewClient(newClient(t, "compat-go-txn-admin"))
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

// got is one record a reader returned.
type got struct {
	partition int32
	offset    int64
	value     string
}

// readAll reads topic from the start (no group) with the given isolation
// level until it has at least want records (or waitTimeout passes), then
// keeps polling for settle so records that must not come can show up.
func readAll(t *testing.T, topic string, iso kgo.IsolationLevel, want int) []got {
	t.Helper()
	cl := newClient(t, "compat-go-txn-reader",
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	defer cl.Close()
	var out []got
	poll := func(d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, got{r.Partition, r.Offset, string(r.Value)})
		})
	}
	deadline := time.Now().Add(waitTimeout)
	for len(out) < want && time.Now().Before(deadline) {
		poll(200 * time.Millisecond)
	}
	end := time.Now().Add(settle)
	for time.Now().Before(end) {
		poll(200 * time.Millisecond)
	}
	return out
}

// valuesOf returns the values of one partition (all when partition < 0) in order.
func valuesOf(rs []got, partition int32) []string {
	var vs []string
	for _, r := range rs {
		if partition < 0 || r.partition == partition {
			vs = append(vs, r.value)
		}
	}
	return vs
}

func offsetsOf(rs []got, partition int32) []int64 {
	var os []int64
	for _, r := range rs {
		if r.partition == partition {
			os = append(os, r.offset)
		}
	}
	return os
}

func seq(prefix string, n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return vs
}

func span(from, to int64) []int64 {
	var os []int64
	for o := from; o < to; o++ {
		os = append(os, o)
	}
	return os
}
