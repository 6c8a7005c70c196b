package compat

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func describeTopicConfig(t *testing.T, adm *kadm.Client, topic, key string) (string, kmsg.ConfigSource) {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(opCtx(t), topic)
	if err != nil {
		t.Fatalf("describe configs: %v", err)
	}
	for _, rc := range rcs {
		if rc.Name != topic {
			continue
		}
		if rc.Err != nil {
			t.Fatalf("describe configs of %s: %v (%s)", topic, rc.Err, rc.ErrMessage)
		}
		for _, c := range rc.Configs {
			if c.Key == key {
				if c.Value == nil {
					return "<null>", c.Source
				}
				return *c.Value, c.Source
			}
		}
		t.Fatalf("config %s missing from the description of %s", key, topic)
	}
	t.Fatalf("no config description for %s", topic)
	return "", 0
}

// TestTopicAdmin runs the topic life cycle: create with configs, list,
// duplicate create, describe/alter configs, grow partitions, delete.
func TestTopicAdmin(t *testing.T) {
	adm := newAdmin(t)
	topic := uniqueTopic("admin")
	createTopic(t, adm, topic, 2, map[string]*string{
		"retention.ms":   kadm.StringPtr("86400000"),
		"cleanup.policy": kadm.StringPtr("delete"),
	})

	t.Run("list-all-topics", func(t *testing.T) {
		// Polled: with several brokers, the one asked may list a topic created
		// through another a moment later (Shoal agents: within 1 s).
		var td kadm.TopicDetail
		waitUntil(t, topic+" in the list of all topics", func() (bool, string) {
			tds, err := adm.ListTopics(opCtx(t))
			if err != nil {
				return false, err.Error()
			}
			var ok bool
			td, ok = tds[topic]
			return ok, fmt.Sprintf("not in the topic list (%d topics)", len(tds))
		})
		if len(td.Partitions) != 2 || td.IsInternal {
			t.Errorf("%d partitions, internal %v; want 2, false", len(td.Partitions), td.IsInternal)
		}
	})

	t.Run("describe-topic", func(t *testing.T) {
		tds, err := adm.ListTopics(opCtx(t), topic)
		if err != nil {
			t.Fatal(err)
		}
		td := tds[topic]
		if td.Err != nil {
			t.Fatal(td.Err)
		}
		for _, p := range []int32{0, 1} {
			pd, ok := td.Partitions[p]
			if !ok || pd.Leader < 0 || len(pd.Replicas) == 0 {
				t.Errorf("partition %d: %+v", p, pd)
			}
		}
	})

	t.Run("duplicate-create-fails", func(t *testing.T) {
		// CreateTopics (plural) reports per-topic errors in the response.
		resps, err := adm.CreateTopics(opCtx(t), 1, 1, nil, topic)
		if err != nil {
			t.Fatalf("request failed: %v", err)
		}
		if r := resps[topic]; !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			t.Errorf("got %v (%s), want TOPIC_ALREADY_EXISTS", r.Err, r.ErrMessage)
		}
	})

	t.Run("describe-configs", func(t *testing.T) {
		v, src := describeTopicConfig(t, adm, topic, "retention.ms")
		if v != "86400000" {
			t.Errorf("retention.ms = %s, want 86400000", v)
		}
		if src != kmsg.ConfigSourceDynamicTopicConfig {
			t.Errorf("retention.ms source = %v, want DYNAMIC_TOPIC_CONFIG", src)
		}
		if v, _ := describeTopicConfig(t, adm, topic, "cleanup.policy"); v != "delete" {
			t.Errorf("cleanup.policy = %s, want delete", v)
		}
	})

	t.Run("incremental-alter-configs", func(t *testing.T) {
		resps, err := adm.AlterTopicConfigs(opCtx(t), []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("3600000")},
		}, topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resps {
			if r.Err != nil {
				t.Fatalf("alter %s: %v (%s)", r.Name, r.Err, r.ErrMessage)
			}
		}
		waitUntil(t, "retention.ms to become 3600000", func() (bool, string) {
			v, _ := describeTopicConfig(t, adm, topic, "retention.ms")
			return v == "3600000", v
		})
		if v, _ := describeTopicConfig(t, adm, topic, "cleanup.policy"); v != "delete" {
			t.Errorf("cleanup.policy = %s after an incremental alter of another key", v)
		}
	})

	t.Run("create-partitions", func(t *testing.T) {
		resps, err := adm.CreatePartitions(opCtx(t), 3, topic) // 2 + 3
		if err != nil {
			t.Fatal(err)
		}
		if r := resps[topic]; r.Err != nil {
			t.Fatalf("create partitions: %v (%s)", r.Err, r.ErrMessage)
		}
		waitForPartitions(t, adm, topic, 5)
	})

	t.Run("delete-topic", func(t *testing.T) {
		resps, err := adm.DeleteTopics(opCtx(t), topic)
		if err != nil {
			t.Fatal(err)
		}
		if r := resps[topic]; r.Err != nil {
			t.Fatalf("delete: %v (%s)", r.Err, r.ErrMessage)
		}
		// Raw Metadata requests: kadm.ListTopics may answer from the
		// client's metadata cache for a few seconds.
		_, raw := newAdminWithClient(t)
		waitUntil(t, topic+" to disappear", func() (bool, string) {
			all := kmsg.NewPtrMetadataRequest() // nil Topics: all topics
			resp, err := all.RequestWith(opCtx(t), raw)
			if err != nil {
				return false, err.Error()
			}
			for _, td := range resp.Topics {
				if td.Topic != nil && *td.Topic == topic {
					return false, "still listed"
				}
			}
			return true, ""
		})
		// Asked by name, the broker answers UNKNOWN_TOPIC_OR_PARTITION (polled too:
		// the request may reach another broker than the listing above).
		waitUntil(t, "UNKNOWN_TOPIC_OR_PARTITION for "+topic+" by name", func() (bool, string) {
			one := kmsg.NewPtrMetadataRequest()
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(topic)
			one.Topics = append(one.Topics, rt)
			resp, err := one.RequestWith(opCtx(t), raw)
			if err != nil {
				return false, err.Error()
			}
			if len(resp.Topics) != 1 {
				return false, fmt.Sprintf("%d topics in the metadata response, want 1", len(resp.Topics))
			}
			err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
			return errors.Is(err, kerr.UnknownTopicOrPartition), fmt.Sprintf("err %v", err)
		})
	})
}
