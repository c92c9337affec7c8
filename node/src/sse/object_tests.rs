//! Encrypted objects through the real object layer: every range of single-part and multipart
//! objects opens to the right plaintext, drives hold only ciphertext, a lost shard heals, and
//! keys are bound to their object.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use rand::SeedableRng;

use super::*;
use crate::object::testing::{fixture_with, shard_files};
use crate::object::PutOptions;
use crate::sse::StaticKms;

fn keyring(seed: u64) -> Keyring {
    let kms = StaticKms::new(
        "test-key",
        [5; 32],
        Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed)),
    )
    .expect("kms");
    Keyring {
        kms: Some(Arc::new(kms)),
        registry: None,
        auto_encryption: false,
        insecure_sse_c: false,
        rng: Mutex::new(Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(9))),
        kms_errors: Default::default(),
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ 0x5a).collect()
}

fn chunks(b: &[u8]) -> futures::stream::Iter<std::vec::IntoIter<Result<Bytes, std::io::Error>>> {
    let v: Vec<Result<Bytes, std::io::Error>> = b
        .chunks(70_001)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(v)
}

async fn read(
    layer: &crate::object::ObjectLayer,
    keys: &Keyring,
    key: &str,
    start: u64,
    end: u64,
) -> ObjectResult<Vec<u8>> {
    let h = layer.get_object("b", key, None).await?;
    let info = h.info.version.sse.clone().expect("encrypted");
    let stage = |e: SseError| ObjectError::Stage(Box::new(e));
    let k = keys.open("b", key, &info, None).await.map_err(stage)?;
    let mut s = Box::pin(open_range(h, &k, start, end).map_err(stage)?);
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

#[tokio::test]
async fn single_part_ranges_heal_and_binding() {
    let f = fixture_with(4, 2, Arc::new(SealedLayout));
    let keys = keyring(1);
    for n in [0usize, 1, 65_535, 65_536, 65_537, 300_001] {
        let key = format!("o{n}");
        let body = pattern(n);
        let (info, k) = keys.create("b", &key, &Mode::S3, false).await.unwrap();
        let w = SealedWrite::new(info);
        let sealed = w.seal(chunks(&body), &k, 1, Default::default()).unwrap();
        let opts = PutOptions {
            stored_form: Some(Arc::new(w.clone())),
            ..Default::default()
        };
        let put = f
            .layer
            .put_object("b", &key, sealed, (), opts, |_| Ok(vec![]))
            .await
            .unwrap();
        assert_eq!(put.version.size, n as u64, "plaintext size recorded");
        assert_eq!(put.version.etag, hex::encode(Md5::digest(&body)));
        assert_eq!(
            read(&f.layer, &keys, &key, 0, n as u64).await.unwrap(),
            body
        );
        for (a, b) in [
            (0, 1),
            (65_530, 65_546),
            (65_536, 131_073),
            (n / 3, n.saturating_sub(1)),
        ] {
            let (a, b) = (a.min(n), b.min(n).max(a.min(n)));
            let got = read(&f.layer, &keys, &key, a as u64, b as u64)
                .await
                .unwrap();
            assert_eq!(got, &body[a..b], "{key} {a}..{b}");
        }
    }
    // The big one lives in shard files: lose one, heal, read back.
    let files = f
        .roots
        .iter()
        .flat_map(|r| shard_files(r))
        .collect::<Vec<_>>();
    assert!(!files.is_empty());
    std::fs::remove_file(&files[0]).unwrap();
    let healed = f.layer.heal_object("b", "o300001").await.unwrap();
    assert!(healed.shards_written >= 1, "{healed:?}");
    assert_eq!(
        read(&f.layer, &keys, "o300001", 0, 300_001).await.unwrap(),
        pattern(300_001)
    );
    // A sealed key copied onto another object does not open.
    let v = f.layer.head_object("b", "o1", None).await.unwrap().version;
    let moved = keys.open("b", "o0", v.sse.as_ref().unwrap(), None).await;
    assert!(moved.is_err());
}

#[tokio::test]
async fn multipart_parts_have_their_own_keys_and_ranges_span_them() {
    let f = fixture_with(4, 2, Arc::new(SealedLayout));
    let keys = keyring(2);
    let (info, k) = keys.create("b", "mp", &Mode::S3, true).await.unwrap();
    let w = SealedWrite::new(info);
    let id = f
        .layer
        .create_multipart(
            "b",
            "mp",
            PutOptions {
                stored_form: Some(Arc::new(w.clone())),
                ..Default::default()
            },
            String::new(),
        )
        .await
        .unwrap();
    let sizes = [5 << 20, 5 << 20, 100_000usize];
    let body = pattern(sizes.iter().sum());
    let mut chosen = Vec::new();
    let mut at = 0;
    for (i, n) in sizes.iter().enumerate() {
        let number = i as u32 + 1;
        let part = SealedWrite::new(w.info.clone());
        let sealed = part
            .seal(chunks(&body[at..at + n]), &k, number, Default::default())
            .unwrap();
        let p = f
            .layer
            .put_part(
                "b",
                "mp",
                &id,
                number,
                sealed,
                (),
                |_| Ok(vec![]),
                Some(&part as &dyn StoredForm),
            )
            .await
            .unwrap();
        assert_eq!(p.size, *n as u64);
        assert_eq!(p.etag, hex::encode(Md5::digest(&body[at..at + n])));
        chosen.push((number, p.etag));
        at += n;
    }
    let done = f
        .layer
        .complete_multipart(
            "b",
            "mp",
            &id,
            &chosen,
            cairn_control_plane::Versioning::Unversioned,
            false,
        )
        .await
        .unwrap();
    assert_eq!(done.version.size, body.len() as u64);
    let total = body.len() as u64;
    assert_eq!(read(&f.layer, &keys, "mp", 0, total).await.unwrap(), body);
    let five = 5u64 << 20;
    for (a, b) in [
        (five - 10, five + 10),
        (five - 1, 2 * five + 5),
        (2 * five, total),
    ] {
        let got = read(&f.layer, &keys, "mp", a, b).await.unwrap();
        assert_eq!(got, &body[a as usize..b as usize], "{a}..{b}");
    }
}
