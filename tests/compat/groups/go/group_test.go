package groups

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	partitions = 6
	records    = 3000
	pollMax    = 20                    // records per poll...
	pollPause  = 50 * time.Millisecond // ...and a pause after each, so a member can leave mid-way
)

// member is one group consumer (kgo.ConsumerGroup + kgo.ConsumeTopics) with
// autocommit off: it commits exactly what it processed after every poll and,
// for revoked partitions, in OnPartitionsRevoked (as franz-go recommends).
type member struct {
	name  string
	topic string
	l     *ledger
	cl    *kgo.Client

	mu             sync.Mutex
	assigned       map[int32]bool
	pending        map[int32]int64 // next offset to commit
	revocations    int
	commitFailures int
	events         []string

	stop chan struct{}
	done chan struct{}
}

func startMember(t *testing.T, name, group, topic string, l *ledger, balancer kgo.GroupBalancer) *member {
	t.Helper()
	m := &member{name: name, topic: topic, l: l, assigned: map[int32]bool{}, pending: map[int32]int64{},
		stop: make(chan struct{}), done: make(chan struct{})}
	opts := append(baseOpts(t, name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.Balancers(balancer),
		kgo.SessionTimeout(sessionTimeout),
		kgo.HeartbeatInterval(heartbeatTimeout),
		kgo.RebalanceTimeout(30*time.Second),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range ps[topic] {
				m.assigned[p] = true
			}
			m.events = append(m.events, fmt.Sprintf("assigned %v", ps[topic]))
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if len(ps[topic]) == 0 {
				return
			}
			m.revocations++
			m.events = append(m.events, fmt.Sprintf("revoked %v", ps[topic]))
			m.commitLocked(ctx, ps[topic])
			for _, p := range ps[topic] {
				delete(m.assigned, p)
				delete(m.pending, p)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.events = append(m.events, fmt.Sprintf("lost %v", ps[topic]))
			for _, p := range ps[topic] {
				delete(m.assigned, p)
				delete(m.pending, p)
			}
		}),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("new group consumer: %v", err)
	}
	m.cl = cl
	go m.loop()
	t.Cleanup(func() { m.close(t) })
	return m
}

func (m *member) loop() {
	defer close(m.done)
	for {
		select {
		case <-m.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fetches := m.cl.PollRecords(ctx, pollMax)
		cancel()
		if fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				m.mu.Lock()
				m.events = append(m.events, fmt.Sprintf("fetch error %s[%d]: %v", topic, p, err))
				m.mu.Unlock()
			}
		})
		n := 0
		m.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			n++
			m.l.addConsumed(m.name, r.Partition, r.Offset, string(r.Value))
			// Records of a partition revoked meanwhile are not committed by us.
			if m.assigned[r.Partition] {
				m.pending[r.Partition] = r.Offset + 1
			}
		})
		m.mu.Unlock()
		if n > 0 {
			time.Sleep(pollPause)
		}
		m.mu.Lock()
		var ps []int32
		for p := range m.pending {
			ps = append(ps, p)
		}
		m.commitLocked(context.Background(), ps)
		m.mu.Unlock()
	}
}

// commitLocked commits the pending offsets of the given partitions (m.mu held).
func (m *member) commitLocked(ctx context.Context, ps []int32) {
	offs := map[int32]int64{}
	eo := map[int32]kgo.EpochOffset{}
	for _, p := range ps {
		if off, ok := m.pending[p]; ok && m.assigned[p] {
			offs[p] = off
			eo[p] = kgo.EpochOffset{Epoch: -1, Offset: off}
		}
	}
	if len(offs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var cerr error
	m.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{m.topic: eo},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
						cerr = e
					}
				}
			}
		})
	if cerr != nil {
		m.commitFailures++
		m.events = append(m.events, fmt.Sprintf("commit failed: %v", cerr))
		return
	}
	m.l.addCommitted(offs)
	for p, off := range offs {
		if m.pending[p] == off {
			delete(m.pending, p)
		}
	}
}

// close stops polling, commits what is pending and closes the client (which
// leaves the group). Safe to call twice.
func (m *member) close(t *testing.T) {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		t.Errorf("member %s: poll loop did not stop", m.name)
	}
	m.mu.Lock()
	var ps []int32
	for p := range m.pending {
		ps = append(ps, p)
	}
	m.commitLocked(context.Background(), ps)
	m.mu.Unlock()
	closed := make(chan struct{})
	go func() { m.cl.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Errorf("member %s: Close did not return", m.name)
	}
}

func (m *member) assignment() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []int32
	for p := range m.assigned {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func (m *member) stats() (revocations, commitFailures int, events []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.revocations, m.commitFailures, append([]string(nil), m.events...)
}

func sameSet(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	s := map[int32]bool{}
	for _, p := range a {
		s[p] = true
	}
	for _, p := range b {
		if !s[p] {
			return false
		}
	}
	return true
}

func containsAll(a, b []int32) bool {
	s := map[int32]bool{}
	for _, p := range a {
		s[p] = true
	}
	for _, p := range b {
		if !s[p] {
			return false
		}
	}
	return true
}

// awaitBalanced waits until the group is Stable with exactly these members,
// their assignments split the partitions evenly, and describe agrees with
// what each member was assigned.
func awaitBalanced(t *testing.T, adm *kadm.Client, group string, ms []*member) map[string][]int32 {
	t.Helper()
	var out map[string][]int32
	waitUntil(t, waitTimeout, fmt.Sprintf("group %s balanced over %d members", group, len(ms)), func() (bool, string) {
		out = map[string][]int32{}
		union := map[int32]bool{}
		total := 0
		for _, m := range ms {
			a := m.assignment()
			out[m.name] = a
			if len(a) < partitions/len(ms) || len(a) > (partitions+len(ms)-1)/len(ms) {
				return false, fmt.Sprintf("assignments %v", out)
			}
			for _, p := range a {
				union[p] = true
			}
			total += len(a)
		}
		if len(union) != partitions || total != partitions {
			return false, fmt.Sprintf("assignments %v", out)
		}
		dgs, err := adm.DescribeGroups(opCtx(t), group)
		if err != nil {
			return false, err.Error()
		}
		dg := dgs[group]
		if dg.Err != nil || dg.State != "Stable" || len(dg.Members) != len(ms) {
			return false, fmt.Sprintf("describe: state %s, %d members, err %v", dg.State, len(dg.Members), dg.Err)
		}
		described := map[string][]int32{}
		for _, dm := range dg.Members {
			ca, ok := dm.Assigned.AsConsumer()
			if !ok {
				return false, "member assignment is not a consumer assignment"
			}
			for _, tp := range ca.Topics {
				described[dm.MemberID] = append(described[dm.MemberID], tp.Partitions...)
			}
		}
		for _, m := range ms {
			id, _ := m.cl.GroupMetadata()
			if !sameSet(described[id], out[m.name]) {
				return false, fmt.Sprintf("member %s (%s): describe %v, member %v", m.name, id, described[id], out[m.name])
			}
		}
		return true, ""
	})
	return out
}

func committedVsEnd(t *testing.T, adm *kadm.Client, group, topic string) (map[int32]int64, map[int32]int64, error) {
	fetched, err := adm.FetchOffsets(opCtx(t), group)
	if err != nil {
		return nil, nil, err
	}
	if err := fetched.Error(); err != nil {
		return nil, nil, err
	}
	ends, err := adm.ListEndOffsets(opCtx(t), topic)
	if err != nil {
		return nil, nil, err
	}
	committed := map[int32]int64{}
	fetched.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			committed[o.Partition] = o.At
		}
	})
	end := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	return committed, end, nil
}

func TestGroupThreeMembersOneLeaves(t *testing.T) {
	for _, tc := range []struct {
		name        string
		balancer    kgo.GroupBalancer
		cooperative bool
	}{
		{"cooperative-sticky", kgo.CooperativeStickyBalancer(), true},
		{"range", kgo.RangeBalancer(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adm := newAdmin(t)
			topic := uniqueName(tc.name)
			group := uniqueName(tc.name)
			createTopic(t, adm, topic, partitions)
			l := newLedger()
			produceKeyed(t, topic, l, 0, records/2)
			m1 := startMember(t, "g1", group, topic, l, tc.balancer)
			m2 := startMember(t, "g2", group, topic, l, tc.balancer)
			m3 := startMember(t, "g3", group, topic, l, tc.balancer)
			before := awaitBalanced(t, adm, group, []*member{m1, m2, m3})
			waitUntil(t, waitTimeout, "the first half consumed", func() (bool, string) {
				n := l.missing()
				return n == 0, fmt.Sprintf("%d missing", n)
			})
			rev1, _, _ := m1.stats()
			rev2, _, _ := m2.stats()

			// Second half; g3 leaves while it is consuming it.
			n3 := l.consumedBy("g3")
			produceKeyed(t, topic, l, records/2, records)
			waitUntil(t, waitTimeout, "g3 consuming the second half", func() (bool, string) {
				return l.consumedBy("g3") > n3, ""
			})
			m3.close(t)
			t.Logf("g3 left after consuming %d records of the second half", l.consumedBy("g3")-n3)

			after := awaitBalanced(t, adm, group, []*member{m1, m2})
			t.Logf("%v -> %v", before, after)
			if !containsAll(append(append([]int32(nil), after["g1"]...), after["g2"]...), before["g3"]) {
				t.Fatalf("g3's partitions %v not taken over: %v", before["g3"], after)
			}
			r1, _, ev1 := m1.stats()
			r2, _, ev2 := m2.stats()
			if tc.cooperative {
				if !containsAll(after["g1"], before["g1"]) || !containsAll(after["g2"], before["g2"]) {
					t.Fatalf("survivors lost partitions in a cooperative rebalance: %v -> %v", before, after)
				}
				if r1 != rev1 || r2 != rev2 {
					t.Fatalf("survivors had partitions revoked: g1 %v, g2 %v", ev1, ev2)
				}
			} else if r1 == rev1 || r2 == rev2 {
				t.Fatalf("eager rebalance without revocation: g1 %v, g2 %v", ev1, ev2)
			}

			// kadm: the group is listed and described while active.
			lgs, err := adm.ListGroups(opCtx(t))
			if err != nil {
				t.Fatalf("list groups: %v", err)
			}
			if lg, ok := lgs[group]; !ok || lg.ProtocolType != "consumer" || (lg.State != "" && lg.State != "Stable") {
				t.Fatalf("list groups: %+v (found %v)", lg, ok)
			}
			stable, err := adm.ListGroups(opCtx(t), "Stable")
			if err != nil {
				t.Fatalf("list groups (Stable): %v", err)
			}
			if _, ok := stable[group]; !ok {
				t.Fatalf("list groups filtered on Stable does not contain %s", group)
			}
			dgs, err := adm.DescribeGroups(opCtx(t), group)
			if err != nil {
				t.Fatalf("describe groups: %v", err)
			}
			dg := dgs[group]
			if dg.ProtocolType != "consumer" || dg.Protocol != tc.name || dg.Coordinator.NodeID < 0 {
				t.Fatalf("describe: protocol type %q, protocol %q, coordinator %d", dg.ProtocolType, dg.Protocol, dg.Coordinator.NodeID)
			}
			for _, dm := range dg.Members {
				if dm.ClientID != "g1" && dm.ClientID != "g2" || dm.ClientHost == "" {
					t.Fatalf("describe: member %+v", dm)
				}
				if md, ok := dm.Join.AsConsumer(); !ok || len(md.Topics) != 1 || md.Topics[0] != topic {
					t.Fatalf("describe: member subscription %+v", md)
				}
			}

			waitUntil(t, waitTimeout, "everything consumed, committed offsets at the end offsets", func() (bool, string) {
				if n := l.missing(); n > 0 {
					return false, fmt.Sprintf("%d records not consumed", n)
				}
				committed, end, err := committedVsEnd(t, adm, group, topic)
				if err != nil {
					return false, err.Error()
				}
				if len(end) != partitions || fmt.Sprint(committed) != fmt.Sprint(end) {
					return false, fmt.Sprintf("committed %v, end %v", committed, end)
				}
				return true, ""
			})
			l.verify(t)
			_, f1, _ := m1.stats()
			_, f2, _ := m2.stats()
			t.Logf("%d records, %d duplicates, commit failures g1=%d g2=%d", records, l.duplicates(), f1, f2)

			m1.close(t)
			m2.close(t)
			waitUntil(t, waitTimeout, "the group to be empty", func() (bool, string) {
				dgs, err := adm.DescribeGroups(opCtx(t), group)
				if err != nil {
					return false, err.Error()
				}
				dg := dgs[group]
				return dg.State == "Empty" && len(dg.Members) == 0, fmt.Sprintf("state %s, %d members", dg.State, len(dg.Members))
			})
			dels, err := adm.DeleteGroups(opCtx(t), group)
			if err != nil || dels.Error() != nil {
				t.Fatalf("delete group: %v %v", err, dels.Error())
			}
			lgs, err = adm.ListGroups(opCtx(t))
			if err != nil {
				t.Fatalf("list groups: %v", err)
			}
			if _, ok := lgs[group]; ok {
				t.Fatalf("deleted group %s still listed", group)
			}
		})
	}
}

// TestKadmGroupOffsets: offsets of a group without members through kadm
// (OffsetCommit with generation -1, OffsetFetch, OffsetDelete, DeleteGroups).
func TestKadmGroupOffsets(t *testing.T) {
	adm := newAdmin(t)
	topic := uniqueName("kadm")
	group := uniqueName("kadm")
	createTopic(t, adm, topic, 3)
	l := newLedger()
	produceKeyed(t, topic, l, 0, 30)

	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4, LeaderEpoch: -1, Metadata: "m0"})
	os.Add(kadm.Offset{Topic: topic, Partition: 1, At: 2, LeaderEpoch: -1})
	resp, err := adm.CommitOffsets(opCtx(t), group, os)
	if err != nil || resp.Error() != nil {
		t.Fatalf("commit offsets: %v %v", err, resp.Error())
	}
	fetched, err := adm.FetchOffsets(opCtx(t), group)
	if err != nil || fetched.Error() != nil {
		t.Fatalf("fetch offsets: %v %v", err, fetched.Error())
	}
	got := map[int32]string{}
	fetched.Each(func(o kadm.OffsetResponse) { got[o.Partition] = fmt.Sprintf("%d/%s", o.At, o.Metadata) })
	if fmt.Sprint(got) != fmt.Sprint(map[int32]string{0: "4/m0", 1: "2/"}) {
		t.Fatalf("fetched %v", got)
	}
	lgs, err := adm.ListGroups(opCtx(t))
	if err != nil {
		t.Fatalf("list groups: %v", err)
	}
	if lg, ok := lgs[group]; !ok || (lg.State != "" && lg.State != "Empty") {
		t.Fatalf("list groups: %+v (found %v)", lg, ok)
	}
	dgs, err := adm.DescribeGroups(opCtx(t), group)
	if err != nil || dgs[group].Err != nil || dgs[group].State != "Empty" || len(dgs[group].Members) != 0 {
		t.Fatalf("describe: %v %+v", err, dgs[group])
	}
	ts := make(kadm.TopicsSet)
	ts.Add(topic, 0)
	dels, err := adm.DeleteOffsets(opCtx(t), group, ts)
	if err != nil || dels.Error() != nil {
		t.Fatalf("delete offsets: %v %v", err, dels.Error())
	}
	fetched, err = adm.FetchOffsets(opCtx(t), group)
	if err != nil || fetched.Error() != nil {
		t.Fatalf("fetch offsets: %v %v", err, fetched.Error())
	}
	got = map[int32]string{}
	fetched.Each(func(o kadm.OffsetResponse) { got[o.Partition] = fmt.Sprintf("%d/%s", o.At, o.Metadata) })
	if fmt.Sprint(got) != fmt.Sprint(map[int32]string{1: "2/"}) {
		t.Fatalf("after deleting partition 0: %v", got)
	}
	gd, err := adm.DeleteGroups(opCtx(t), group)
	if err != nil || gd.Error() != nil {
		t.Fatalf("delete group: %v %v", err, gd.Error())
	}
	gd, err = adm.DeleteGroups(opCtx(t), group)
	if err != nil {
		t.Fatalf("delete group again: %v", err)
	}
	if e := gd[group].Err; !errors.Is(e, kerr.GroupIDNotFound) {
		t.Fatalf("deleting a deleted group: %v, want GROUP_ID_NOT_FOUND", e)
	}
}
