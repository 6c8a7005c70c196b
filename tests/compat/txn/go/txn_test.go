package txn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGroupTransactSessionCopy runs franz-go's consume-transform-produce
// helper (GroupTransactSession: a group consumer with read_committed and
// stable offset fetches, TxnOffsetCommit with its group generation, EndTxn)
// to copy 300 records from a 3-partition input to the same partitions of an
// output topic, at most 50 per transaction. The second transaction is aborted
// on purpose (the session rewinds to the committed offsets and redoes it).
// A read_committed reader must see every input exactly once, in the input's
// per-partition order; the group's committed offsets must be the input's
// end offsets.
func TestGroupTransactSessionCopy(t *testing.T) {
	const n = 300
	adm := newAdmin(t)
	in, out := uniqueName("in"), uniqueName("out")
	createTopic(t, adm, in, 3)
	createTopic(t, adm, out, 3)

	// The input, with the default (idempotent) producer.
	prod := newClient(t, "compat-go-txn-input", kgo.RequiredAcks(kgo.AllISRAcks()))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: in, Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte(fmt.Sprintf("in-%d", i))}
	}
	if err := prod.ProduceSync(opCtx(t), recs...).FirstErr(); err != nil {
		t.Fatalf("produce input: %v", err)
	}
	wantOut := map[int32][]string{} // output partition -> values in input offset order
	for _, r := range recs {
		wantOut[r.Partition] = append(wantOut[r.Partition], "out-"+string(r.Value))
	}

	group := uniqueName("group")
	sess, err := kgo.NewGroupTransactSession(append(baseOpts(t, "compat-go-txn-session"),
		kgo.TransactionalID(uniqueName("txn")),
		kgo.TransactionTimeout(30*time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(time.Second),
		kgo.FetchMaxWait(200*time.Millisecond),
	)...)
	if err != nil {
		t.Fatalf("new group transact session: %v", err)
	}
	defer sess.Close()

	copied, aborted, txns := 0, 0, 0
	deadline := time.Now().Add(waitTimeout)
	for copied < n {
		if time.Now().After(deadline) {
			t.Fatalf("copied %d of %d records in %v (%d transactions)", copied, n, waitTimeout, txns)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := sess.PollRecords(ctx, 50)
		cancel()
		if fs.IsClientClosed() {
			t.Fatal("client closed")
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		batch := fs.Records()
		if len(batch) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatalf("begin: %v", err)
		}
		outs := make([]*kgo.Record, 0, len(batch))
		for _, r := range batch {
			outs = append(outs, &kgo.Record{Topic: out, Partition: r.Partition, Key: r.Key,
				Value: []byte("out-" + string(r.Value))})
		}
		// ProduceSync: every output is in the log before the transaction ends
		// (so the aborted ones are really there to hide).
		if err := sess.ProduceSync(opCtx(t), outs...).FirstErr(); err != nil {
			t.Fatalf("produce output: %v", err)
		}
		try := kgo.TryCommit
		if txns == 1 {
			try = kgo.TryAbort
		}
		committed, err := sess.End(opCtx(t), try)
		if err != nil {
			t.Fatalf("end transaction %d: %v", txns, err)
		}
		txns++
		if try == kgo.TryAbort && committed {
			t.Fatalf("End(TryAbort) reported a commit")
		}
		if committed {
			copied += len(batch)
		} else {
			aborted += len(batch)
		}
	}
	t.Logf("%d transactions, %d records committed, %d aborted", txns, copied, aborted)
	if aborted == 0 {
		t.Fatal("no transaction was aborted")
	}

	// The group's offsets are the input's end offsets (the commit markers on
	// __consumer_offsets may land just after EndTxn returns).
	waitUntil(t, waitTimeout, "group offsets = input end offsets", func() (bool, string) {
		ends, err := adm.ListEndOffsets(opCtx(t), in)
		if err != nil {
			return false, err.Error()
		}
		offs, err := adm.FetchOffsets(opCtx(t), group)
		if err != nil {
			return false, err.Error()
		}
		for p := int32(0); p < 3; p++ {
			e, _ := ends.Lookup(in, p)
			o, ok := offs.Lookup(in, p)
			if !ok || o.Err != nil || o.At != e.Offset {
				return false, fmt.Sprintf("partition %d: committed %v (err %v), end %d", p, o.At, o.Err, e.Offset)
			}
		}
		return true, ""
	})

	rc := readAll(t, out, kgo.ReadCommitted(), n)
	if len(rc) != n {
		t.Fatalf("read_committed got %d outputs, want %d", len(rc), n)
	}
	for p := int32(0); p < 3; p++ {
		if got := valuesOf(rc, p); !slices.Equal(got, wantOut[p]) {
			t.Fatalf("read_committed output partition %d: %d values %v..., want %d in input order",
				p, len(got), got[:min(5, len(got))], len(wantOut[p]))
		}
	}
	ru := readAll(t, out, kgo.ReadUncommitted(), n+aborted)
	if len(ru) != n+aborted {
		t.Fatalf("read_uncommitted got %d outputs, want %d committed + %d aborted", len(ru), n, aborted)
	}
}

// TestAbortedTransactionInvisible: a plain transactional client writes 5
// records and aborts (EndTransaction TryAbort), then writes 3 and commits.
// While the first transaction is open, DescribeTransactions shows it Ongoing
// on the partition and ListOffsets(read_committed) stays at its first offset.
// read_committed returns only the 3 committed records (offsets 6..8, after
// the abort marker at 5); read_uncommitted returns all 8.
func TestAbortedTransactionInvisible(t *testing.T) {
	adm := newAdmin(t)
	topic := uniqueName("abort")
	createTopic(t, adm, topic, 1)
	txnID := uniqueName("txn")
	cl := newClient(t, "compat-go-txn-producer",
		kgo.TransactionalID(txnID),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)

	produce := func(prefix string, n int) []int64 {
		rs := make([]*kgo.Record, n)
		for i := range rs {
			rs[i] = &kgo.Record{Partition: 0, Value: []byte(fmt.Sprintf("%s-%d", prefix, i))}
		}
		res := cl.ProduceSync(opCtx(t), rs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", prefix, err)
		}
		var offs []int64
		for _, r := range res {
			offs = append(offs, r.Record.Offset)
		}
		return offs
	}
	listed := func(committed bool) int64 {
		var l kadm.ListedOffsets
		var err error
		if committed {
			l, err = adm.ListCommittedOffsets(opCtx(t), topic)
		} else {
			l, err = adm.ListEndOffsets(opCtx(t), topic)
		}
		if err != nil {
			t.Fatalf("list offsets: %v", err)
		}
		o, ok := l.Lookup(topic, 0)
		if !ok || o.Err != nil {
			t.Fatalf("list offsets of %s/0: %v", topic, o.Err)
		}
		return o.Offset
	}

	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin: %v", err)
	}
	if offs := produce("aborted", 5); !slices.Equal(offs, span(0, 5)) {
		t.Fatalf("aborted records at offsets %v, want 0..4", offs)
	}
	desc, err := adm.DescribeTransactions(opCtx(t), txnID)
	if err != nil {
		t.Fatalf("describe transactions: %v", err)
	}
	d, ok := desc[txnID]
	inTxn := d.Topics.Sorted()
	if !ok || d.Err != nil || d.State != "Ongoing" || len(inTxn) != 1 || inTxn[0].Topic != topic ||
		!slices.Equal(inTxn[0].Partitions, []int32{0}) {
		t.Fatalf("DescribeTransactions while open: %+v, want Ongoing on %s/0", d, topic)
	}
	if lso, hw := listed(true), listed(false); lso != 0 || hw != 5 {
		t.Fatalf("while open: ListOffsets read_committed %d, read_uncommitted %d; want 0, 5", lso, hw)
	}
	if err := cl.EndTransaction(opCtx(t), kgo.TryAbort); err != nil {
		t.Fatalf("abort: %v", err)
	}

	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin: %v", err)
	}
	if offs := produce("committed", 3); !slices.Equal(offs, span(6, 9)) {
		t.Fatalf("committed records at offsets %v, want 6..8 (abort marker at 5)", offs)
	}
	if err := cl.EndTransaction(opCtx(t), kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	waitUntil(t, waitTimeout, "LSO = end offset = 10", func() (bool, string) {
		lso, hw := listed(true), listed(false)
		return lso == 10 && hw == 10, fmt.Sprintf("LSO %d, end %d", lso, hw)
	})

	rc := readAll(t, topic, kgo.ReadCommitted(), 3)
	if got := valuesOf(rc, -1); !slices.Equal(got, seq("committed", 3)) || !slices.Equal(offsetsOf(rc, 0), span(6, 9)) {
		t.Fatalf("read_committed got %v at %v, want committed-0..2 at 6..8", got, offsetsOf(rc, 0))
	}
	ru := readAll(t, topic, kgo.ReadUncommitted(), 8)
	if got, want := valuesOf(ru, -1), append(seq("aborted", 5), seq("committed", 3)...); !slices.Equal(got, want) {
		t.Fatalf("read_uncommitted got %v, want %v", got, want)
	}
}
