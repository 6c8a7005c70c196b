//! The conformance suite every [`MetaStore`] backend must pass.
//!
//! Backends call [`run_all`] from their own tests with a fresh, empty store. Each check
//! uses its own topic names, so they can share one store. The suite panics (with a
//! message naming the broken promise) on the first violation.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::*;

/// A segment for tests: `span` offsets, timestamps `ts..ts+span`.
pub fn segment(
    topic_id: Uuid,
    partition: i32,
    data_offset: u64,
    ts: i64,
    span: u64,
) -> SegmentAppend {
    SegmentAppend {
        topic_id,
        partition,
        data_offset,
        data_len: 100,
        offset_span: span,
        min_timestamp: ts,
        max_timestamp: ts + span as i64 - 1,
    }
}

fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.to_string(),
        partitions,
        configs: BTreeMap::new(),
    }
}

/// Runs every check against `store`.
pub async fn run_all(store: Arc<dyn MetaStore>) {
    topics_lifecycle(&*store).await;
    commit_assigns_contiguous_offsets(&*store).await;
    commit_skips_unknown_partitions(&*store).await;
    index_lookups(&*store).await;
    concurrent_commits_never_overlap(store.clone()).await;
    cluster_id_is_stable(&*store).await;
    group_offsets(&*store).await;
}

async fn topics_lifecycle(s: &dyn MetaStore) {
    let mut sp = spec("conf-topics", 3);
    sp.configs.insert("cleanup.policy".into(), "delete".into());
    let t = s.create_topic(sp.clone()).await.expect("create topic");
    assert_eq!(t.partitions, 3);
    assert!(!t.id.is_nil(), "topic id must not be nil");
    assert!(matches!(
        s.create_topic(sp).await,
        Err(MetaError::TopicExists(_))
    ));
    assert!(matches!(
        s.create_topic(spec("conf-zero", 0)).await,
        Err(MetaError::Invalid(_))
    ));
    let listed = s.list_topics().await.unwrap();
    let found = listed
        .iter()
        .find(|x| x.name == "conf-topics")
        .expect("listed");
    assert_eq!(found, &t);

    let grown = s.create_partitions("conf-topics", 5).await.unwrap();
    assert_eq!(grown.partitions, 5);
    assert_eq!(
        s.partition_offsets(t.id, 4).await.unwrap(),
        PartitionOffsets {
            log_start: 0,
            high_watermark: 0
        }
    );
    assert!(matches!(
        s.create_partitions("conf-topics", 5).await,
        Err(MetaError::Invalid(_))
    ));
    assert!(matches!(
        s.create_partitions("conf-missing", 5).await,
        Err(MetaError::UnknownTopic(_))
    ));

    let configs: BTreeMap<_, _> = [("retention.ms".to_string(), "1000".to_string())].into();
    let changed = s
        .set_topic_configs("conf-topics", configs.clone())
        .await
        .unwrap();
    assert_eq!(
        changed.configs, configs,
        "set_topic_configs replaces the whole map"
    );

    let deleted = s.delete_topic("conf-topics").await.unwrap();
    assert_eq!(deleted.id, t.id);
    assert!(matches!(
        s.delete_topic("conf-topics").await,
        Err(MetaError::UnknownTopic(_))
    ));
    assert!(matches!(
        s.partition_offsets(t.id, 0).await,
        Err(MetaError::UnknownPartition { .. })
    ));
    // The name is free again, with a new id.
    let again = s.create_topic(spec("conf-topics", 1)).await.unwrap();
    assert_ne!(again.id, t.id);
}

async fn commit_assigns_contiguous_offsets(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-commit", 2)).await.unwrap();
    let obj = |k: &str| ObjectRef {
        key: k.to_string(),
        size: 1000,
    };
    let out = s
        .commit_flush(
            &obj("c1"),
            &[segment(t.id, 0, 0, 10, 5), segment(t.id, 1, 100, 10, 2)],
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            SegmentOutcome::Committed {
                base_offset: 0,
                log_start_offset: 0
            },
            SegmentOutcome::Committed {
                base_offset: 0,
                log_start_offset: 0
            },
        ]
    );
    let out = s
        .commit_flush(&obj("c2"), &[segment(t.id, 0, 0, 20, 3)])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![SegmentOutcome::Committed {
            base_offset: 5,
            log_start_offset: 0
        }]
    );
    assert_eq!(
        s.partition_offsets(t.id, 0).await.unwrap().high_watermark,
        8
    );
    assert_eq!(
        s.partition_offsets(t.id, 1).await.unwrap().high_watermark,
        2
    );
}

async fn commit_skips_unknown_partitions(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-unknown", 1)).await.unwrap();
    let out = s
        .commit_flush(
            &ObjectRef {
                key: "u1".into(),
                size: 1,
            },
            &[
                segment(t.id, 7, 0, 0, 1),
                segment(Uuid::new_v4(), 0, 0, 0, 1),
                segment(t.id, 0, 0, 0, 4),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out[0], SegmentOutcome::UnknownPartition);
    assert_eq!(out[1], SegmentOutcome::UnknownPartition);
    assert_eq!(
        out[2],
        SegmentOutcome::Committed {
            base_offset: 0,
            log_start_offset: 0
        }
    );
}

async fn index_lookups(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-index", 1)).await.unwrap();
    // Three objects: offsets [0,10) ts 100.., [10,15) ts 50.., [15,35) ts 200..
    for (i, (ts, span)) in [(100, 10), (50, 5), (200, 20)].into_iter().enumerate() {
        s.commit_flush(
            &ObjectRef {
                key: format!("i{i}"),
                size: 1,
            },
            &[segment(t.id, 0, i as u64 * 7, ts, span)],
        )
        .await
        .unwrap();
    }
    let from = |o| s.index_from(t.id, 0, o, 10);
    let bases = |v: Vec<IndexEntry>| v.iter().map(|e| e.base_offset).collect::<Vec<_>>();
    assert_eq!(bases(from(0).await.unwrap()), vec![0, 10, 15]);
    assert_eq!(
        bases(from(9).await.unwrap()),
        vec![0, 10, 15],
        "entry containing offset first"
    );
    assert_eq!(bases(from(12).await.unwrap()), vec![10, 15]);
    assert_eq!(bases(from(34).await.unwrap()), vec![15]);
    assert!(from(35).await.unwrap().is_empty());
    assert_eq!(
        bases(s.index_from(t.id, 0, 0, 2).await.unwrap()),
        vec![0, 10],
        "limit"
    );
    let e = &from(12).await.unwrap()[0];
    assert_eq!(
        (e.object_key.as_str(), e.data_offset, e.end_offset),
        ("i1", 7, 15)
    );

    let ts = |x| s.index_for_timestamp(t.id, 0, x);
    assert_eq!(ts(0).await.unwrap().unwrap().base_offset, 0);
    assert_eq!(ts(105).await.unwrap().unwrap().base_offset, 0);
    assert_eq!(
        ts(110).await.unwrap().unwrap().base_offset,
        15,
        "max_ts of [0,10) is 109"
    );
    assert!(ts(10_000).await.unwrap().is_none());
    let max = s.index_max_timestamp(t.id, 0).await.unwrap().unwrap();
    assert_eq!(max.base_offset, 15);
}

async fn concurrent_commits_never_overlap(s: Arc<dyn MetaStore>) {
    let t = s.create_topic(spec("conf-concurrent", 2)).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                let segs = [
                    segment(t.id, 0, 0, 0, (w + 1) as u64),
                    segment(t.id, 1, 0, 0, 1),
                ];
                s.commit_flush(
                    &ObjectRef {
                        key: format!("w{w}-{i}"),
                        size: 1,
                    },
                    &segs,
                )
                .await
                .expect("concurrent commit");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let expected: i64 = (1..=6).map(|w| w * 15).sum();
    assert_eq!(
        s.partition_offsets(t.id, 0).await.unwrap().high_watermark,
        expected
    );
    assert_eq!(
        s.partition_offsets(t.id, 1).await.unwrap().high_watermark,
        90
    );
    let entries = s.index_from(t.id, 0, 0, 1000).await.unwrap();
    let mut next = 0;
    for e in &entries {
        assert_eq!(
            e.base_offset, next,
            "index entries must be contiguous, no gap or overlap"
        );
        next = e.end_offset;
    }
    assert_eq!(next, expected);
}

async fn cluster_id_is_stable(s: &dyn MetaStore) {
    let a = s.cluster_id().await.unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, s.cluster_id().await.unwrap());
}

async fn group_offsets(s: &dyn MetaStore) {
    let o = |topic: &str, partition, offset| GroupOffset {
        topic: topic.to_string(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: Some(format!("m{offset}")),
        commit_timestamp: 1,
    };
    assert!(s.group_offsets("conf-g").await.unwrap().is_empty());
    s.commit_group_offsets("conf-g", &[o("b", 1, 5), o("a", 0, 7), o("a", 1, 9)])
        .await
        .unwrap();
    s.commit_group_offsets("conf-g", &[o("a", 0, 8)])
        .await
        .unwrap();
    s.commit_group_offsets("conf-h", &[o("a", 0, 1)])
        .await
        .unwrap();
    let got = s.group_offsets("conf-g").await.unwrap();
    assert_eq!(
        got,
        vec![o("a", 0, 8), o("a", 1, 9), o("b", 1, 5)],
        "later commits replace earlier ones"
    );
    s.delete_group_offsets("conf-g", "a", &[1]).await.unwrap();
    assert_eq!(
        s.group_offsets("conf-g").await.unwrap(),
        vec![o("a", 0, 8), o("b", 1, 5)]
    );
    let groups = s.offset_groups().await.unwrap();
    assert!(groups.contains(&"conf-g".to_string()) && groups.contains(&"conf-h".to_string()));
    assert!(s.delete_group("conf-g").await.unwrap());
    assert!(!s.delete_group("conf-g").await.unwrap());
    assert!(s.group_offsets("conf-g").await.unwrap().is_empty());
    assert_eq!(
        s.group_offsets("conf-h").await.unwrap().len(),
        1,
        "other groups untouched"
    );
}
