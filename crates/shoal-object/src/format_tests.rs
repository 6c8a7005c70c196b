use super::*;
use proptest::prelude::*;

fn build(parts: &[(u8, i32, Vec<u8>, u64)]) -> (Bytes, Vec<SegmentInfo>, Vec<BatchSlot>) {
    let mut b = ObjectBuilder::new();
    let mut slots = Vec::new();
    for (i, (topic, partition, data, span)) in parts.iter().enumerate() {
        let id = Uuid::from_bytes([*topic; 16]);
        slots.push(b.add(
            id,
            *partition,
            Bytes::from(data.clone()),
            *span,
            i as i64,
            i as i64 + 10,
        ));
    }
    let (obj, infos) = b.finish();
    (obj, infos, slots)
}

#[test]
fn groups_batches_by_partition_and_round_trips() {
    let (obj, infos, slots) = build(&[
        (1, 0, vec![1; 10], 3),
        (1, 1, vec![2; 5], 1),
        (1, 0, vec![3; 7], 2),
    ]);
    assert_eq!(infos.len(), 2);
    assert_eq!(
        slots[0],
        BatchSlot {
            segment: 0,
            offset_delta: 0
        }
    );
    assert_eq!(
        slots[2],
        BatchSlot {
            segment: 0,
            offset_delta: 3
        }
    );
    let seg0 = &infos[0];
    assert_eq!(
        (
            seg0.data_offset,
            seg0.data_len,
            seg0.offset_span,
            seg0.batch_count
        ),
        (0, 17, 5, 2)
    );
    let bytes = &obj[seg0.data_offset as usize..(seg0.data_offset + seg0.data_len) as usize];
    assert_eq!(&bytes[..10], &[1; 10]);
    assert_eq!(&bytes[10..], &[3; 7]);
    assert_eq!((seg0.min_timestamp, seg0.max_timestamp), (0, 12));
    let read = ObjectIndex::read(&obj).unwrap();
    assert_eq!(read.segments, infos);
    assert_eq!(read.data_len, 22);
}

#[test]
fn empty_object_is_valid() {
    let (obj, infos) = ObjectBuilder::new().finish();
    assert!(infos.is_empty());
    assert_eq!(ObjectIndex::read(&obj).unwrap().segments, vec![]);
}

#[test]
fn detects_corruption() {
    let (obj, _, _) = build(&[(1, 0, vec![9; 100], 1), (2, 3, vec![8; 50], 1)]);
    assert_eq!(
        ObjectIndex::read(&obj[..10]),
        Err(ObjectError::TooShort(10))
    );

    let mut bad = obj.to_vec();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(ObjectIndex::read(&bad), Err(ObjectError::BadMagic));

    let mut bad = obj.to_vec();
    bad[5] ^= 1;
    assert_eq!(ObjectIndex::read(&bad), Err(ObjectError::Checksum("data")));
    assert!(ObjectIndex::read_index_only(&bad).is_ok());

    let mut bad = obj.to_vec();
    bad[160] ^= 1; // inside the index
    assert_eq!(ObjectIndex::read(&bad), Err(ObjectError::Checksum("index")));

    let mut bad = obj.to_vec();
    let v = bad.len() - FOOTER_LEN + 21;
    bad[v] = 9;
    assert_eq!(
        ObjectIndex::read(&bad),
        Err(ObjectError::UnsupportedVersion(9))
    );

    let mut bad = obj.to_vec();
    let at = bad.len() - FOOTER_LEN;
    bad[at..at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(ObjectIndex::read(&bad), Err(ObjectError::BadIndexLocation));
}

proptest! {
    #[test]
    fn round_trip_any(parts in prop::collection::vec(
        (0u8..4, 0i32..5, prop::collection::vec(any::<u8>(), 0..64), 1u64..100), 0..30)) {
        let (obj, infos, slots) = build(&parts);
        let read = ObjectIndex::read(&obj).unwrap();
        prop_assert_eq!(&read.segments, &infos);
        // Every batch is found at its slot inside its segment, in order.
        let mut cursor = vec![0u64; infos.len()];
        for ((_, _, data, _), slot) in parts.iter().zip(&slots) {
            let seg = &infos[slot.segment];
            let at = (seg.data_offset + cursor[slot.segment]) as usize;
            prop_assert_eq!(&obj[at..at + data.len()], &data[..]);
            cursor[slot.segment] += data.len() as u64;
        }
    }

    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = ObjectIndex::read(&data);
    }

    #[test]
    fn any_flip_is_detected(pos in 0usize..10_000, flip in 1u8..=255) {
        let (obj, _, _) = build(&[(1, 0, vec![5; 40], 2), (1, 1, vec![6; 30], 1)]);
        let mut bad = obj.to_vec();
        let pos = pos % bad.len();
        // Reserved footer bytes are not covered by anything.
        let footer = bad.len() - FOOTER_LEN;
        prop_assume!(!(footer + 22..footer + 32).contains(&pos));
        bad[pos] ^= flip;
        prop_assert!(ObjectIndex::read(&bad).is_err());
    }
}
