// Package compat holds compatibility tests that drive a Kafka-protocol server
// with franz-go (kgo + kadm). The server is named by SHOAL_BOOTSTRAP
// (host:port); it may be Shoal or Apache Kafka, and every check must pass
// against Kafka.
//
// The server is assumed to have topic auto-creation off: topics are created
// with kadm, consumers use explicit partition assignment (ConsumePartitions),
// and producers keep franz-go's default idempotent writes.
package compat

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	opTimeout           = 30 * time.Second // any single client operation
	numPartitions       = 4
	recordsPerPartition = 30
)

var (
	runID      = randomHex(4)
	topicCount atomic.Int64
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func uniqueTopic(prefix string) string {
	return fmt.Sprintf("compat-go-%s-%s-%d", prefix, runID, topicCount.Add(1))
}

// unreachable is set by TestMain when the broker does not answer, so every
// test fails at once instead of each one waiting out its own timeouts.
var unreachable error

func TestMain(m *testing.M) {
	if addr := os.Getenv("SHOAL_BOOTSTRAP"); addr != "" {
		unreachable = precheck(addr)
	}
	os.Exit(m.Run())
}

// precheck does one ApiVersions + Metadata round trip, bounded to 15 s.
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

// baseOpts are shared by every client: bounded timeouts everywhere.
// SHOAL_COMPAT_DEBUG=1 turns on franz-go's debug log (to stderr).
func baseOpts(t *testing.T) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(bootstrap(t)),
		kgo.ClientID("shoal-compat-franz-go"),
		kgo.DialTimeout(10 * time.Second),
		kgo.RetryTimeout(opTimeout),
		kgo.RequestRetries(10),
		// Retry quickly after a NOT_LEADER right after topic creation
		// (the default waits 5 s between metadata refreshes).
		kgo.MetadataMinAge(200 * time.Millisecond),
	}
	if os.Getenv("SHOAL_COMPAT_DEBUG") != "" {
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, func() string {
			return time.Now().Format("15:04:05.000 ") + t.Name() + " "
		})))
	}
	return opts
}

// newProducer returns a client that produces to explicit partitions.
func newProducer(t *testing.T, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts := append(baseOpts(t),
		// franz-go's default idempotent writes: sequence numbers keep order
		// on retries.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(20*time.Millisecond),
		kgo.ProduceRequestTimeout(15*time.Second),
		kgo.RecordDeliveryTimeout(opTimeout),
	)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// newConsumer returns a client reading the given partitions from offset 0,
// with no consumer group.
func newConsumer(t *testing.T, topic string, partitions []int32, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	offs := make(map[int32]kgo.Offset, len(partitions))
	for _, p := range partitions {
		offs[p] = kgo.NewOffset().At(0)
	}
	opts := append(baseOpts(t),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newAdmin(t *testing.T) *kadm.Client {
	t.Helper()
	adm, _ := newAdminWithClient(t)
	return adm
}

// newAdminWithClient also returns the underlying kgo client, for raw
// requests that must bypass kadm's metadata cache.
func newAdminWithClient(t *testing.T) (*kadm.Client, *kgo.Client) {
	t.Helper()
	cl, err := kgo.NewClient(baseOpts(t)...)
	if err != nil {
		t.Fatalf("new admin client: %v", err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(opTimeout / time.Millisecond))
	return adm, cl
}

// createTopic creates a topic (replication factor 1) and waits until every
// partition has a leader in the metadata.
func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(opCtx(t), partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("create topic %s: %v (%s)", topic, resp.Err, resp.ErrMessage)
	}
	waitForPartitions(t, adm, topic, int(partitions))
}

func waitForPartitions(t *testing.T, adm *kadm.Client, topic string, partitions int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("topic %s with %d led partitions", topic, partitions), func() (bool, string) {
		tds, err := adm.ListTopics(opCtx(t), topic)
		if err != nil {
			return false, err.Error()
		}
		td, ok := tds[topic]
		if !ok {
			return false, "topic missing from metadata"
		}
		if td.Err != nil {
			return false, td.Err.Error()
		}
		if len(td.Partitions) != partitions {
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

// waitUntil polls cond every 200ms for up to opTimeout.
func waitUntil(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s; last: %s", opTimeout, what, last)
}

// produceSync produces records (Partition set on each) and fails on any error.
func produceSync(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(opCtx(t), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeExact reads until each partition in want has want[p] records.
func consumeExact(t *testing.T, cl *kgo.Client, want map[int32]int) map[int32][]*kgo.Record {
	t.Helper()
	ctx := opCtx(t)
	got := make(map[int32][]*kgo.Record)
	done := func() bool {
		for p, n := range want {
			if len(got[p]) < n {
				return false
			}
		}
		return true
	}
	for !done() {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			have := make(map[int32]int)
			for p, rs := range got {
				have[p] = len(rs)
			}
			t.Fatalf("timed out reading: want %v, have %v", want, have)
		}
		for _, fe := range fetches.Errors() {
			t.Fatalf("fetch error on %s[%d]: %v", fe.Topic, fe.Partition, fe.Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], r)
		})
	}
	return got
}

// recordSpec is what a test produces and expects back.
type recordSpec struct {
	key, value []byte // nil means null
	headers    []kgo.RecordHeader
}

// expectedRecords builds deterministic records for one partition: null keys,
// null values (tombstones), empty and binary values, no headers, repeated
// header keys and null header values.
func expectedRecords(tag string, partition int32) []recordSpec {
	out := make([]recordSpec, 0, recordsPerPartition)
	for i := 0; i < recordsPerPartition; i++ {
		var r recordSpec
		if !(i%7 == 3 && i%5 != 4) {
			r.key = []byte(fmt.Sprintf("key-%d-%d", partition, i))
		}
		switch {
		case i%5 == 4:
			r.value = nil // tombstone
		case i%11 == 6:
			bin := make([]byte, 0, 768)
			for j := 0; j < 768; j++ {
				bin = append(bin, byte(j))
			}
			r.value = bin
		case i%13 == 12:
			r.value = []byte{} // empty, not null
		default:
			r.value = bytes.Repeat([]byte(fmt.Sprintf("value-%s-%d-%d-", tag, partition, i)), 1+i%4)
		}
		switch i % 3 {
		case 1:
			r.headers = []kgo.RecordHeader{
				{Key: "h-index", Value: []byte(fmt.Sprint(i))},
				{Key: "h-bin", Value: []byte{0, 0xff, 1}},
			}
		case 2:
			r.headers = []kgo.RecordHeader{
				{Key: "dup", Value: []byte("first")},
				{Key: "dup", Value: []byte("second")},
				{Key: "nullh", Value: nil},
			}
		}
		out = append(out, r)
	}
	return out
}

func (s recordSpec) record(topic string, partition int32) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: partition, Key: s.key, Value: s.value, Headers: s.headers}
}

// sameBytes compares two byte slices including null-ness.
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

func describeBytes(b []byte) string {
	if b == nil {
		return "<null>"
	}
	if len(b) > 40 {
		return fmt.Sprintf("%q...(%d bytes)", b[:40], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// checkRecord compares a consumed record against its spec.
func checkRecord(t *testing.T, where string, got *kgo.Record, want recordSpec) {
	t.Helper()
	if !sameBytes(got.Key, want.key) {
		t.Errorf("%s: key %s, want %s", where, describeBytes(got.Key), describeBytes(want.key))
	}
	if !sameBytes(got.Value, want.value) {
		t.Errorf("%s: value %s, want %s", where, describeBytes(got.Value), describeBytes(want.value))
	}
	if len(got.Headers) != len(want.headers) {
		t.Errorf("%s: %d headers, want %d", where, len(got.Headers), len(want.headers))
		return
	}
	for i := range want.headers {
		g, w := got.Headers[i], want.headers[i]
		if g.Key != w.Key || !sameBytes(g.Value, w.Value) {
			t.Errorf("%s: header %d = %q:%s, want %q:%s", where, i, g.Key, describeBytes(g.Value), w.Key, describeBytes(w.Value))
		}
	}
}
