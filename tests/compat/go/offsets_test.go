package compat

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const nTS = 12

var baseTS = time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()

// The timestamp topic is shared by the offset tests: partition 0 holds nTS
// records with timestamps baseTS + i*1000 ms, produced in batches of 4;
// partition 1 is empty. The first test that needs it creates it.
var (
	tsOnce sync.Once
	tsName string
	tsOK   bool
)

func tsSetup(t *testing.T) string {
	t.Helper()
	tsOnce.Do(func() {
		// Runs in the first test that needs the topic; a failure there
		// (t.Fatal) leaves tsOK false and fails every later caller too.
		adm := newAdmin(t)
		tsName = uniqueTopic("ts")
		createTopic(t, adm, tsName, 2, nil)
		// franz-go measures RecordDeliveryTimeout from each record's own
		// Timestamp, so records stamped an hour ago would expire at once:
		// no delivery timeout here (the produce context still bounds it).
		prod := newProducer(t, kgo.RecordDeliveryTimeout(0))
		for start := 0; start < nTS; start += 4 {
			var recs []*kgo.Record
			for i := start; i < start+4; i++ {
				recs = append(recs, &kgo.Record{
					Topic: tsName, Partition: 0,
					Key:       []byte(fmt.Sprintf("k%d", i)),
					Value:     []byte(fmt.Sprintf("v%d", i)),
					Timestamp: time.UnixMilli(baseTS + int64(i)*1000),
				})
			}
			produceSync(t, prod, recs...)
		}
		tsOK = true
	})
	if !tsOK {
		t.Fatal("setting up the timestamp topic failed (see the first offset test)")
	}
	return tsName
}

func TestExplicitTimestampsRoundTrip(t *testing.T) {
	topic := tsSetup(t)
	got := consumeExact(t, newConsumer(t, topic, []int32{0}), map[int32]int{0: nTS})[0]
	for i, r := range got {
		if want := baseTS + int64(i)*1000; r.Timestamp.UnixMilli() != want {
			t.Errorf("record %d: timestamp %d, want %d", i, r.Timestamp.UnixMilli(), want)
		}
		if r.Attrs.TimestampType() != 0 {
			t.Errorf("record %d: timestamp type %d, want 0 (CreateTime)", i, r.Attrs.TimestampType())
		}
	}
}

func lookup(t *testing.T, lo kadm.ListedOffsets, err error, topic string, p int32) kadm.ListedOffset {
	t.Helper()
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	o, ok := lo.Lookup(topic, p)
	if !ok {
		t.Fatalf("no listed offset for %s[%d]", topic, p)
	}
	if o.Err != nil {
		t.Fatalf("listed offset %s[%d]: %v", topic, p, o.Err)
	}
	return o
}

// TestListOffsetsAfterMilli: the first offset whose timestamp is >= the target.
func TestListOffsetsAfterMilli(t *testing.T) {
	topic := tsSetup(t)
	adm := newAdmin(t)
	for _, c := range []struct {
		name   string
		delta  int64
		offset int64
	}{
		{"before-all", -60_000, 0},
		{"exact-first", 0, 0},
		{"just-after-first", 1, 1},
		{"exact-mid-batch", 5_000, 5},
		{"between", 5_500, 6},
		{"first-of-batch", 8_000, 8},
		{"exact-last", 11_000, 11},
	} {
		t.Run(c.name, func(t *testing.T) {
			lo, err := adm.ListOffsetsAfterMilli(opCtx(t), baseTS+c.delta, topic)
			o := lookup(t, lo, err, topic, 0)
			if o.Offset != c.offset {
				t.Errorf("offset %d, want %d", o.Offset, c.offset)
			}
			if want := baseTS + c.offset*1000; o.Timestamp != want {
				t.Errorf("timestamp %d, want %d", o.Timestamp, want)
			}
		})
	}
	t.Run("after-last", func(t *testing.T) {
		// The broker answers -1; kadm then falls back to the end offset.
		lo, err := adm.ListOffsetsAfterMilli(opCtx(t), baseTS+11_001, topic)
		if o := lookup(t, lo, err, topic, 0); o.Offset != nTS {
			t.Errorf("offset %d, want end offset %d", o.Offset, nTS)
		}
	})
	t.Run("empty-partition", func(t *testing.T) {
		lo, err := adm.ListOffsetsAfterMilli(opCtx(t), baseTS, topic)
		if o := lookup(t, lo, err, topic, 1); o.Offset != 0 {
			t.Errorf("offset %d, want 0", o.Offset)
		}
	})
}

func TestStartAndEndOffsets(t *testing.T) {
	topic := tsSetup(t)
	adm := newAdmin(t)
	start, err := adm.ListStartOffsets(opCtx(t), topic)
	for p, want := range map[int32]int64{0: 0, 1: 0} {
		if o := lookup(t, start, err, topic, p); o.Offset != want {
			t.Errorf("start offset of %d: %d, want %d", p, o.Offset, want)
		}
	}
	end, err := adm.ListEndOffsets(opCtx(t), topic)
	for p, want := range map[int32]int64{0: nTS, 1: 0} {
		if o := lookup(t, end, err, topic, p); o.Offset != want {
			t.Errorf("end offset of %d: %d, want %d", p, o.Offset, want)
		}
	}
}

// TestMaxTimestampOffset: ListOffsets v7 (KIP-734), timestamp -3.
func TestMaxTimestampOffset(t *testing.T) {
	topic := tsSetup(t)
	adm := newAdmin(t)
	lo, err := adm.ListMaxTimestampOffsets(opCtx(t), topic)
	o := lookup(t, lo, err, topic, 0)
	if o.Offset != nTS-1 || o.Timestamp != baseTS+(nTS-1)*1000 {
		t.Errorf("max timestamp offset %d @ %d, want %d @ %d", o.Offset, o.Timestamp, nTS-1, baseTS+(nTS-1)*1000)
	}
}

// TestConsumeFromTimestamp: a consumer told to start AfterMilli resolves the
// offset through ListOffsets by time and begins at the right record.
func TestConsumeFromTimestamp(t *testing.T) {
	topic := tsSetup(t)
	cl, err := kgo.NewClient(append(baseOpts(t),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			topic: {0: kgo.NewOffset().AfterMilli(baseTS + 5_500)},
		}),
		kgo.FetchMaxWait(500*time.Millisecond),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	got := consumeExact(t, cl, map[int32]int{0: nTS - 6})[0]
	if got[0].Offset != 6 || string(got[0].Value) != "v6" {
		t.Errorf("first record offset %d value %q, want 6 \"v6\"", got[0].Offset, got[0].Value)
	}
}
