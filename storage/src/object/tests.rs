//! Object layer on real local drives: round trips, lost and corrupted shards, healing, listing.

use bytes::Bytes;
use futures::StreamExt;

use super::testing::{fixture, shard_files};
use super::*;
use cairn_control_plane::Versioning;

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn put(l: &ObjectLayer, key: &str, body: &[u8]) -> ObjectInfo {
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    l.put_object(
        "b",
        key,
        futures::stream::iter(chunks),
        (),
        PutOptions::default(),
        |_| Ok(vec![]),
    )
    .await
    .unwrap()
}

async fn get(l: &ObjectLayer, key: &str, start: u64, end: u64) -> ObjectResult<Vec<u8>> {
    let h = l.get_object("b", key, None).await?;
    let mut s = Box::pin(h.stream(start, end));
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

#[tokio::test]
async fn roundtrip_sizes_and_ranges() {
    let f = fixture(6, 2);
    for (i, n) in [
        0usize,
        1,
        1000,
        128 * 1024,
        128 * 1024 + 1,
        (1 << 20) + 1,
        3 << 20,
    ]
    .into_iter()
    .enumerate()
    {
        let body = data(n, i as u8);
        let key = format!("k{n}");
        let info = put(&f.layer, &key, &body).await;
        assert_eq!(info.version.size, n as u64);
        assert_eq!(
            get(&f.layer, &key, 0, n as u64).await.unwrap(),
            body,
            "size {n}"
        );
        if n > 10 {
            let (a, b) = (n as u64 / 3, n as u64 - 3);
            assert_eq!(
                get(&f.layer, &key, a, b).await.unwrap(),
                &body[a as usize..b as usize]
            );
        }
    }
}

#[tokio::test]
async fn survives_parity_many_lost_drives_and_heals() {
    let f = fixture(6, 2);
    let big = data(2_500_000, 7);
    let small = data(5000, 9);
    put(&f.layer, "big", &big).await;
    put(&f.layer, "small", &small).await;
    // Lose every shard file and the metadata of two drives' objects.
    for r in &f.roots[..2] {
        for p in shard_files(r) {
            std::fs::remove_file(p).unwrap();
        }
    }
    for d in &f.layer.sets[0].drives[..2] {
        d.apply(vec![MetaOp::Delete(keys::object("b", "small"))])
            .await
            .unwrap();
    }
    assert_eq!(
        get(&f.layer, "big", 0, big.len() as u64).await.unwrap(),
        big
    );
    assert_eq!(
        get(&f.layer, "small", 0, small.len() as u64).await.unwrap(),
        small
    );

    let s = f.layer.heal_all(&["b".to_string()]).await;
    assert_eq!(s.objects_scanned, 2);
    assert_eq!(s.objects_healed, 2);
    assert_eq!(s.shards_written, 4);
    // Now two *other* drives can go and everything still reads.
    for r in &f.roots[2..4] {
        for p in shard_files(r) {
            std::fs::remove_file(p).unwrap();
        }
    }
    assert_eq!(
        get(&f.layer, "big", 0, big.len() as u64).await.unwrap(),
        big
    );
    let again = f.layer.heal_all(&["b".to_string()]).await;
    assert_eq!(again.shards_written, 2);
    assert_eq!(f.layer.heal_all(&["b".to_string()]).await.shards_written, 0);
    // What `cairn admin heal` polls: the three full heals added up, none running now.
    let p = f.layer.heal_progress.snapshot();
    assert_eq!(
        (p.running, p.objects_scanned, p.shards_written, p.errors),
        (0, 6, 6, 0)
    );
    assert_eq!(p.objects_healed, s.objects_healed + again.objects_healed);
}

#[tokio::test]
async fn bitrot_is_detected_and_repaired() {
    let f = fixture(4, 2);
    let body = data(1_500_000, 3);
    put(&f.layer, "o", &body).await;
    let victim = shard_files(&f.roots[1]).pop().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0xFF;
    std::fs::write(&victim, &bytes).unwrap();
    assert_eq!(
        get(&f.layer, "o", 0, body.len() as u64).await.unwrap(),
        body
    );
    let s = f.layer.heal_object("b", "o").await.unwrap();
    assert_eq!(s.shards_written, 1);
    assert_ne!(
        std::fs::read(&victim).unwrap(),
        bytes,
        "damaged shard was rewritten"
    );
}

#[tokio::test]
async fn too_many_losses_fail_cleanly() {
    let f = fixture(6, 2);
    let body = data(2_000_000, 5);
    put(&f.layer, "o", &body).await;
    for r in &f.roots[..3] {
        for p in shard_files(r) {
            std::fs::remove_file(p).unwrap();
        }
    }
    let err = get(&f.layer, "o", 0, body.len() as u64).await.unwrap_err();
    assert!(
        matches!(
            err,
            ObjectError::ReadQuorum { .. } | ObjectError::Unrecoverable
        ),
        "{err}"
    );
}

#[tokio::test]
async fn overwrite_delete_and_listing() {
    let f = fixture(4, 1);
    for i in 0..30 {
        put(
            &f.layer,
            &format!("dir{}/k{i:02}", i % 3),
            &data(10, i as u8),
        )
        .await;
    }
    put(&f.layer, "top", b"x").await;
    let info = put(&f.layer, "top", b"yy").await;
    assert_eq!(
        f.layer
            .head_object("b", "top", None)
            .await
            .unwrap()
            .version
            .etag,
        info.version.etag
    );
    let page = f
        .layer
        .list_objects("b", "", Some("/"), "", 1000)
        .await
        .unwrap();
    let names: Vec<String> = page
        .entries
        .iter()
        .map(|e| match e {
            list::Entry::Object { key, .. } => key.clone(),
            list::Entry::Prefix(p) => p.clone(),
        })
        .collect();
    assert_eq!(names, vec!["dir0/", "dir1/", "dir2/", "top"]);
    let p1 = f
        .layer
        .list_objects("b", "dir1/", None, "", 4)
        .await
        .unwrap();
    assert!(p1.truncated);
    assert_eq!(p1.last(), Some("dir1/k10"));
    let p2 = f
        .layer
        .list_objects("b", "dir1/", None, "dir1/k10", 100)
        .await
        .unwrap();
    assert_eq!(p2.entries.len(), 6);
    assert!(!p2.truncated);
    f.layer
        .delete_object(
            "b",
            "top",
            versions::DeleteRequest {
                versioning: Versioning::Unversioned,
                version_id: None,
                bypass: Default::default(),
                replication: &crate::object::replica::Replication::None,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        f.layer.head_object("b", "top", None).await,
        Err(ObjectError::NoSuchKey)
    ));
}

#[tokio::test]
async fn multipart_complete_and_errors() {
    let f = fixture(4, 2);
    let id = f
        .layer
        .create_multipart("b", "mp", PutOptions::default(), String::new())
        .await
        .unwrap();
    let p1 = data(5 << 20, 1);
    let p2 = data(1234, 2);
    let body = |d: &[u8]| {
        let v: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::copy_from_slice(d))];
        futures::stream::iter(v)
    };
    let i1 = f
        .layer
        .put_part("b", "mp", &id, 1, body(&p1), (), |_| Ok(vec![]), None)
        .await
        .unwrap();
    let i2 = f
        .layer
        .put_part("b", "mp", &id, 2, body(&p2), (), |_| Ok(vec![]), None)
        .await
        .unwrap();
    assert!(matches!(
        f.layer
            .complete_multipart(
                "b",
                "mp",
                &id,
                &[(2, i2.etag.clone()), (1, i1.etag.clone())],
                Versioning::Unversioned,
                false,
            )
            .await,
        Err(ObjectError::InvalidPartOrder)
    ));
    assert!(matches!(
        f.layer
            .complete_multipart(
                "b",
                "mp",
                &id,
                &[(1, "bad".into())],
                Versioning::Unversioned,
                false,
            )
            .await,
        Err(ObjectError::InvalidPart)
    ));
    let info = f
        .layer
        .complete_multipart(
            "b",
            "mp",
            &id,
            &[(1, i1.etag), (2, i2.etag)],
            Versioning::Unversioned,
            false,
        )
        .await
        .unwrap();
    assert!(info.version.etag.ends_with("-2"));
    let mut all = p1.clone();
    all.extend_from_slice(&p2);
    assert_eq!(get(&f.layer, "mp", 0, all.len() as u64).await.unwrap(), all);
    assert_eq!(
        get(&f.layer, "mp", (5 << 20) - 10, (5 << 20) + 10)
            .await
            .unwrap(),
        &all[(5 << 20) - 10..(5 << 20) + 10]
    );
    assert!(matches!(
        f.layer.list_parts("b", "mp", &id).await,
        Err(ObjectError::NoSuchUpload)
    ));
}

/// A record below quorum is removed by heal only once it is older than the grace period: a fresh
/// one may be a PUT another node is landing (removing it would lose the write once acknowledged).
#[tokio::test]
async fn heal_removes_only_old_dangling_records() {
    use prost::Message;
    let f = fixture(4, 2);
    put(&f.layer, "o", &data(1000, 1)).await;
    let drive = f.layer.sets[0].drives[0].clone();
    let raw = drive.get(&keys::object("b", "o")).await.unwrap().unwrap();
    let now = f.layer.clock.now_ns();
    for (key, age_ns, removed) in [("fresh", 0, 0), ("old", 2 * 3_600 * 1_000_000_000_i64, 1)] {
        let mut rec = cairn_proto::meta::ObjectRecord::decode(raw.as_slice()).unwrap();
        for v in &mut rec.versions {
            v.mod_time_ns = now - age_ns;
            // Shares no data with "o": removing it must not touch o's shards.
            v.data_dir.clear();
        }
        let meta = keys::object("b", key);
        drive
            .apply(vec![MetaOp::Put(meta.clone(), rec.encode_to_vec())])
            .await
            .unwrap();
        let s = f.layer.heal_object("b", key).await.unwrap();
        assert_eq!(s.dangling_removed, removed, "{key}");
        assert_eq!(
            drive.get(&meta).await.unwrap().is_some(),
            removed == 0,
            "{key}"
        );
    }
    assert_eq!(get(&f.layer, "o", 0, 1000).await.unwrap(), data(1000, 1));
}

fn flip_a_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(path, &bytes).unwrap();
}

/// A completion that reaches too few drives fails and leaves the previous object whole: the data
/// it replaces is freed only once the new version reached write quorum, and below it every drive
/// gets its old record back.
#[tokio::test]
async fn a_completion_below_quorum_keeps_the_previous_object() {
    let f = fixture(6, 2);
    let old = data(1_500_000, 9);
    put(&f.layer, "mp", &old).await;
    let id = f
        .layer
        .create_multipart("b", "mp", PutOptions::default(), String::new())
        .await
        .unwrap();
    let part = vec![Ok::<_, std::io::Error>(Bytes::from(data(700_000, 4)))];
    let info = f
        .layer
        .put_part(
            "b",
            "mp",
            &id,
            1,
            futures::stream::iter(part),
            (),
            |_| Ok(vec![]),
            None,
        )
        .await
        .unwrap();
    // Three of six drives lose the part's shard: the completion lands on three, below quorum.
    for r in &f.roots[..3] {
        std::fs::remove_dir_all(
            r.join(crate::drive::format::SYS_DIR)
                .join(keys::data_dir(&id)),
        )
        .unwrap();
    }
    let err = f
        .layer
        .complete_multipart(
            "b",
            "mp",
            &id,
            &[(1, info.etag)],
            Versioning::Unversioned,
            false,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::WriteQuorum { .. }), "{err}");
    assert_eq!(get(&f.layer, "mp", 0, old.len() as u64).await.unwrap(), old);
    let h = f.layer.head_object("b", "mp", None).await.unwrap();
    assert_eq!(h.version.size, old.len() as u64);
}

/// Heal removes a version that too few intact shards are left of, once every drive answered,
/// and only then: a shard its drive cannot read now may come back.
#[tokio::test]
async fn heal_removes_a_version_lost_beyond_parity_only_for_good() {
    let f = fixture(6, 2);
    let body = data(1_500_000, 6);
    put(&f.layer, "o", &body).await;
    for r in &f.roots[..2] {
        flip_a_byte(&shard_files(r)[0]);
    }
    // The third bad shard cannot be read at all (its drive errs): not known to be lost.
    let unreadable = shard_files(&f.roots[2])[0].clone();
    let saved = std::fs::read(&unreadable).unwrap();
    std::fs::remove_file(&unreadable).unwrap();
    std::fs::create_dir(&unreadable).unwrap();
    assert!(f.layer.heal_object("b", "o").await.is_err());
    assert!(f.layer.head_object("b", "o", None).await.is_ok());

    // Restored, then corrupt: three of six shards damaged for good, four needed.
    std::fs::remove_dir(&unreadable).unwrap();
    std::fs::write(&unreadable, &saved).unwrap();
    flip_a_byte(&unreadable);
    assert!(get(&f.layer, "o", 0, body.len() as u64).await.is_err());
    let s = f.layer.heal_object("b", "o").await.unwrap();
    assert_eq!(s.dangling_removed, 1);
    assert_eq!(
        f.layer
            .lost_versions_removed
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "counted for admin info"
    );
    assert!(matches!(
        f.layer.head_object("b", "o", None).await,
        Err(ObjectError::NoSuchKey)
    ));
    for r in &f.roots {
        assert!(
            shard_files(r).is_empty(),
            "data of the lost version removed"
        );
    }
}

/// A write that reaches quorum but misses a drive asks for a heal at once (MinIO's MRF): until
/// then the version has less redundancy than its parity. A write on every drive asks for none.
#[tokio::test]
async fn a_write_that_missed_a_drive_asks_for_a_heal() {
    let mut f = fixture(6, 2);
    put(&f.layer, "whole", &data(1_500_000, 1)).await;
    assert!(
        f.heal_rx.try_recv().is_err(),
        "no heal after a complete write"
    );

    // The last drive can no longer stage shards: its temp directory is a file now.
    let tmp = f.roots[5].join(crate::drive::format::SYS_DIR).join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    put(&f.layer, "partial", &data(1_500_000, 2)).await;
    let req = f.heal_rx.try_recv().expect("a heal request");
    assert_eq!(
        (req.bucket.as_str(), req.key.as_str(), req.attempt),
        ("b", "partial", 0)
    );
}

/// A replica adds a version or repeats one: the same version again is a no-op, other content
/// under an existing id is refused, and the null version goes only if its lock lets it.
#[tokio::test]
async fn a_replica_never_changes_an_existing_version() {
    use super::replica::{ReplicaOf, Replication};
    let f = fixture(4, 1);
    let replica = |id: &str, body: &[u8], lock: retention::LockState| {
        let chunks = vec![Ok::<_, std::io::Error>(Bytes::copy_from_slice(body))];
        let opts = PutOptions {
            versioning: Versioning::Enabled,
            lock,
            replication: Replication::Replica(ReplicaOf {
                version_id: id.into(),
                mod_time_ns: 1_000,
                etag: None,
            }),
            ..Default::default()
        };
        f.layer
            .put_object("b", "r", futures::stream::iter(chunks), (), opts, |_| {
                Ok(vec![])
            })
    };
    let id = "0b8e3a6c-4a0b-4f8e-9b1e-3d2f6a7c8e93";
    let none = retention::LockState::default();
    replica(id, b"one", none).await.unwrap();
    replica(id, b"one", none).await.unwrap();
    let err = replica(id, b"two", none).await.unwrap_err();
    assert!(matches!(err, ObjectError::ReplicaConflict(_)), "{err}");
    let h = f.layer.get_object("b", "r", Some(id)).await.unwrap();
    let mut s = Box::pin(h.stream(0, 3));
    assert_eq!(&s.next().await.unwrap().unwrap()[..], b"one");

    let held = retention::LockState {
        legal_hold: true,
        ..Default::default()
    };
    replica(NULL_VERSION, b"null one", held).await.unwrap();
    let err = replica(NULL_VERSION, b"null two", none).await.unwrap_err();
    assert!(matches!(err, ObjectError::Locked(_)), "{err}");
}
