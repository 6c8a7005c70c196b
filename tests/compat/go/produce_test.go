package compat

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var codecs = []struct {
	name  string
	codec kgo.CompressionCodec
}{
	{"none", kgo.NoCompression()},
	{"gzip", kgo.GzipCompression()},
	{"snappy", kgo.SnappyCompression()},
	{"lz4", kgo.Lz4Compression()},
	{"zstd", kgo.ZstdCompression()},
}

func allPartitions(n int32) []int32 {
	ps := make([]int32, n)
	for i := range ps {
		ps[i] = int32(i)
	}
	return ps
}

// TestProduceFetchCodecs produces to 4 partitions with each codec and reads
// everything back: per-partition order, offsets, keys, values (including
// null and empty), headers.
func TestProduceFetchCodecs(t *testing.T) {
	adm := newAdmin(t)
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := uniqueTopic("codec-" + c.name)
			createTopic(t, adm, topic, numPartitions, nil)

			expected := make(map[int32][]recordSpec)
			prod := newProducer(t, kgo.ProducerBatchCompression(c.codec))
			// Produce in several rounds so each partition gets several batches.
			const round = 7
			for start := 0; start < recordsPerPartition; start += round {
				var recs []*kgo.Record
				for p := int32(0); p < numPartitions; p++ {
					if start == 0 {
						expected[p] = expectedRecords(c.name, p)
					}
					for i := start; i < start+round && i < recordsPerPartition; i++ {
						recs = append(recs, expected[p][i].record(topic, p))
					}
				}
				produceSync(t, prod, recs...)
				for _, r := range recs {
					if r.Partition < 0 || r.Offset < 0 {
						t.Fatalf("bad produce result %d/%d", r.Partition, r.Offset)
					}
				}
			}

			want := make(map[int32]int)
			for p := int32(0); p < numPartitions; p++ {
				want[p] = recordsPerPartition
			}
			cons := newConsumer(t, topic, allPartitions(numPartitions))
			got := consumeExact(t, cons, want)
			for p := int32(0); p < numPartitions; p++ {
				recs := got[p]
				if len(recs) != recordsPerPartition {
					t.Fatalf("partition %d: %d records, want %d", p, len(recs), recordsPerPartition)
				}
				for i, r := range recs {
					where := fmt.Sprintf("partition %d record %d", p, i)
					if r.Offset != int64(i) {
						t.Errorf("%s: offset %d", where, r.Offset)
					}
					if r.Topic != topic {
						t.Errorf("%s: topic %q", where, r.Topic)
					}
					if r.Attrs.TimestampType() != 0 || r.Timestamp.IsZero() {
						t.Errorf("%s: timestamp type %d / %v", where, r.Attrs.TimestampType(), r.Timestamp)
					}
					checkRecord(t, where, r, expected[p][i])
				}
			}
		})
	}
}

// TestProduceOffsetsAssigned checks the offsets the produce responses hand back.
func TestProduceOffsetsAssigned(t *testing.T) {
	adm := newAdmin(t)
	topic := uniqueTopic("acks")
	createTopic(t, adm, topic, 2, nil)
	prod := newProducer(t)
	for round := 0; round < 3; round++ {
		var recs []*kgo.Record
		for i := 0; i < 5; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 1, Value: []byte(fmt.Sprint(round, i))})
		}
		produceSync(t, prod, recs...)
		for i, r := range recs {
			if want := int64(round*5 + i); r.Offset != want {
				t.Errorf("round %d record %d: offset %d, want %d", round, i, r.Offset, want)
			}
		}
	}
}

// TestTombstonesAndNulls covers null key + null value, null value, null key,
// empty value and empty header value in one partition.
func TestTombstonesAndNulls(t *testing.T) {
	adm := newAdmin(t)
	topic := uniqueTopic("nulls")
	createTopic(t, adm, topic, 1, nil)
	specs := []recordSpec{
		{key: nil, value: nil},
		{key: []byte("k"), value: nil},
		{key: nil, value: []byte("v")},
		{key: []byte("k2"), value: []byte{}, headers: []kgo.RecordHeader{{Key: "e", Value: []byte{}}}},
		{key: []byte{}, value: []byte("x")},
	}
	prod := newProducer(t)
	var recs []*kgo.Record
	for _, s := range specs {
		recs = append(recs, s.record(topic, 0))
	}
	produceSync(t, prod, recs...)
	got := consumeExact(t, newConsumer(t, topic, []int32{0}), map[int32]int{0: len(specs)})[0]
	for i, s := range specs {
		checkRecord(t, fmt.Sprintf("record %d", i), got[i], s)
	}
}

// TestLargeRecord round-trips an exactly 1 MiB value (more than Kafka's
// default max.message.bytes once framed), so the topic, producer and
// consumer limits are all raised.
func TestLargeRecord(t *testing.T) {
	const big = 1 << 20
	adm := newAdmin(t)
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{{"none", kgo.NoCompression()}, {"zstd", kgo.ZstdCompression()}} {
		t.Run(c.name, func(t *testing.T) {
			topic := uniqueTopic("big-" + c.name)
			createTopic(t, adm, topic, 1, map[string]*string{"max.message.bytes": kadm.StringPtr(fmt.Sprint(4 * big))})
			payload := make([]byte, big)
			if _, err := rand.Read(payload); err != nil { // incompressible
				t.Fatal(err)
			}
			specs := []recordSpec{
				{key: []byte("before"), value: []byte("small-1")},
				{key: []byte("big"), value: payload, headers: []kgo.RecordHeader{{Key: "size", Value: []byte(fmt.Sprint(big))}}},
				{key: []byte("after"), value: []byte("small-2")},
			}
			prod := newProducer(t,
				kgo.ProducerBatchCompression(c.codec),
				kgo.ProducerBatchMaxBytes(4*big),
				kgo.BrokerMaxWriteBytes(16*big),
			)
			for _, s := range specs { // one record per request
				produceSync(t, prod, s.record(topic, 0))
			}
			cons := newConsumer(t, topic, []int32{0},
				kgo.FetchMaxBytes(8*big),
				kgo.FetchMaxPartitionBytes(8*big),
				kgo.BrokerMaxReadBytes(16*big),
			)
			got := consumeExact(t, cons, map[int32]int{0: 3})[0]
			for i, s := range specs {
				if got[i].Offset != int64(i) {
					t.Errorf("record %d: offset %d", i, got[i].Offset)
				}
				checkRecord(t, fmt.Sprintf("record %d", i), got[i], s)
			}
			if len(got[1].Value) != big || !bytes.Equal(got[1].Value, payload) {
				t.Errorf("big value: %d bytes, want %d identical bytes", len(got[1].Value), big)
			}
		})
	}
}
