use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;

const P: usize = PACKAGE_SIZE;
const BACKENDS: [Backend; 2] = [Backend::RustCrypto, Backend::AwsLc];

fn object_key(seed: u64) -> ObjectKey {
    ObjectKey::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn sk(key: &ObjectKey) -> StreamKey {
    StreamKey::derive(key, SINGLE_PART)
}

const SIZES: [usize; 12] = [
    0,
    1,
    15,
    P - 1,
    P,
    P + 1,
    2 * P - 1,
    2 * P,
    2 * P + 1,
    3 * P + 17,
    (1 << 20) + 3,
    4 * P,
];

#[test]
fn round_trip_at_every_boundary_size_both_backends() {
    let key = object_key(1);
    for &n in &SIZES {
        let plain = data(n, n as u64);
        for b in BACKENDS {
            let sealed = seal_all(sk(&key), b, &plain).expect("seal");
            assert_eq!(sealed.len() as u64, sealed_size(n as u64), "size {n}");
            assert_eq!(plain_size(sealed.len() as u64), Some(n as u64));
            let back = open_range(sk(&key), b, n as u64, 0, n as u64, &sealed).expect("open");
            assert_eq!(back, plain, "size {n} backend {b:?}");
        }
    }
}

#[test]
fn cross_backend_compatibility() {
    let key = object_key(2);
    for &n in &SIZES {
        let plain = data(n, 99);
        let a = seal_all(sk(&key), Backend::RustCrypto, &plain).expect("seal");
        let b = seal_all(sk(&key), Backend::AwsLc, &plain).expect("seal");
        assert_eq!(a, b, "identical wire format at size {n}");
        let from_a = open_range(sk(&key), Backend::AwsLc, n as u64, 0, n as u64, &a).expect("a");
        let from_b =
            open_range(sk(&key), Backend::RustCrypto, n as u64, 0, n as u64, &b).expect("b");
        assert_eq!(from_a, plain);
        assert_eq!(from_b, plain);
    }
}

#[test]
fn sizes_and_plain_size_inverse() {
    assert_eq!(sealed_size(0), 16);
    assert_eq!(sealed_size(1), 17);
    assert_eq!(sealed_size(P as u64), P as u64 + 16);
    assert_eq!(sealed_size(P as u64 + 1), P as u64 + 1 + 32);
    assert_eq!(plain_size(0), None);
    assert_eq!(plain_size(15), None);
    assert_eq!(plain_size(16), Some(0));
    assert_eq!(plain_size(SEALED_PACKAGE_SIZE as u64 + 16), None);
    assert_eq!(
        plain_size(SEALED_PACKAGE_SIZE as u64 + 17),
        Some(P as u64 + 1)
    );
}

#[test]
fn chunking_does_not_change_the_output() {
    let key = object_key(3);
    let plain = data(3 * P + 5, 5);
    let whole = seal_all(sk(&key), Backend::default(), &plain).expect("seal");
    for chunk in [1usize, 7, 4096, P - 1, P, P + 3, 200_000] {
        let mut enc = Encryptor::new(sk(&key), Backend::default()).expect("enc");
        let mut out = Vec::new();
        for c in plain.chunks(chunk) {
            for p in enc.update(c).expect("update") {
                assert_eq!(p.len(), SEALED_PACKAGE_SIZE);
                out.extend_from_slice(&p);
            }
            assert!(enc.plain_len() <= plain.len() as u64);
        }
        out.extend_from_slice(&enc.finish().expect("finish"));
        assert_eq!(out, whole, "chunk {chunk}");

        // Feeding the decryptor in the same odd chunks.
        let r = package_range(plain.len() as u64, 0, plain.len() as u64).expect("range");
        let mut dec = Decryptor::new(sk(&key), Backend::default(), &r).expect("dec");
        let mut back = Vec::new();
        for c in whole.chunks(chunk) {
            for p in dec.update(BytesMut::from(c)).expect("update") {
                back.extend_from_slice(&p);
            }
        }
        dec.finish().expect("complete");
        assert_eq!(back, plain);
    }
}

#[test]
fn range_decryption_matches_plaintext_slices() {
    let key = object_key(4);
    for &n in &[1usize, P, P + 1, 3 * P + 17, (1 << 20) + 3] {
        let plain = data(n, 11);
        let sealed = seal_all(sk(&key), Backend::default(), &plain).expect("seal");
        let mut points: Vec<usize> = vec![0, 1, n.saturating_sub(1), n];
        for k in 1..=(n / P + 1) {
            for d in [-2i64, -1, 0, 1, 2] {
                let x = (k * P) as i64 + d;
                if x >= 0 && (x as usize) <= n {
                    points.push(x as usize);
                }
            }
        }
        points.sort_unstable();
        points.dedup();
        for &start in &points {
            for &end in &points {
                if end < start {
                    continue;
                }
                let r = package_range(n as u64, start as u64, (end - start) as u64).expect("range");
                let cipher = &sealed[r.cipher.start as usize..r.cipher.end as usize];
                assert_eq!(
                    cipher.len() as u64,
                    if r.packages == 0 {
                        0
                    } else {
                        r.cipher.end - r.cipher.start
                    }
                );
                let got = open_range(
                    sk(&key),
                    Backend::default(),
                    n as u64,
                    start as u64,
                    (end - start) as u64,
                    cipher,
                )
                .expect("open range");
                assert_eq!(got, &plain[start..end], "n {n} range {start}..{end}");
            }
        }
    }
}

#[test]
fn range_reads_only_the_packages_they_touch() {
    let n = 10 * P as u64 + 5;
    let r = package_range(n, P as u64 + 10, 20).expect("range");
    assert_eq!(r.first_seq, 1);
    assert_eq!(r.packages, 1);
    assert_eq!(r.skip, 10);
    assert_eq!(
        r.cipher,
        SEALED_PACKAGE_SIZE as u64..2 * SEALED_PACKAGE_SIZE as u64
    );
    let r = package_range(n, 2 * P as u64 - 1, 2).expect("range");
    assert_eq!((r.first_seq, r.packages), (1, 2));
    let r = package_range(n, n - 1, 1).expect("range");
    assert_eq!((r.first_seq, r.packages), (10, 1));
    assert_eq!(r.cipher.end, sealed_size(n));
    assert_eq!(r.cipher.end - r.cipher.start, 5 + TAG_LEN as u64);
    let r = package_range(0, 0, 0).expect("empty");
    assert_eq!((r.cipher.clone(), r.packages), (0..16, 1));
    assert!(matches!(
        package_range(n, n, 1),
        Err(SseError::InvalidRange { .. })
    ));
    assert!(matches!(
        package_range(n, u64::MAX, 2),
        Err(SseError::InvalidRange { .. })
    ));
}

fn open_all(key: &ObjectKey, size: u64, sealed: &[u8]) -> SseResult<Vec<u8>> {
    open_range(sk(key), Backend::default(), size, 0, size, sealed)
}

fn is_auth_failure(r: SseResult<Vec<u8>>) -> bool {
    matches!(
        r,
        Err(SseError::PackageAuth { .. } | SseError::Truncated | SseError::TrailingData)
    )
}

#[test]
fn tampering_with_any_byte_is_detected() {
    let key = object_key(5);
    // Empty, one-byte and multi-package streams: every byte of the short ones, every tag byte and
    // a stride through the bodies of the long one.
    for &n in &[0usize, 1, 100] {
        let plain = data(n, 1);
        let sealed = seal_all(sk(&key), Backend::default(), &plain).expect("seal");
        for i in 0..sealed.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = sealed.clone();
                t[i] ^= bit;
                for b in BACKENDS {
                    let r = open_range(sk(&key), b, n as u64, 0, n as u64, &t);
                    assert!(is_auth_failure(r), "n {n} byte {i}");
                }
            }
        }
    }
    let n = 2 * P + 100;
    let plain = data(n, 2);
    let sealed = seal_all(sk(&key), Backend::default(), &plain).expect("seal");
    let mut positions: Vec<usize> = (0..sealed.len()).step_by(1009).collect();
    for pkg in 0..3 {
        let start = pkg * SEALED_PACKAGE_SIZE;
        let end = (start + SEALED_PACKAGE_SIZE).min(sealed.len());
        positions.extend(start..start + 3);
        positions.extend(end - TAG_LEN - 2..end);
    }
    for i in positions {
        let mut t = sealed.clone();
        t[i] ^= 0x5a;
        assert!(is_auth_failure(open_all(&key, n as u64, &t)), "byte {i}");
    }
}

#[test]
fn reordering_dropping_duplicating_appending_is_detected() {
    let key = object_key(6);
    let n = 3 * P + 100;
    let plain = data(n, 3);
    let sealed = seal_all(sk(&key), Backend::default(), &plain).expect("seal");
    let pkgs: Vec<&[u8]> = sealed.chunks(SEALED_PACKAGE_SIZE).collect();
    assert_eq!(pkgs.len(), 4);
    let join =
        |order: &[usize]| -> Vec<u8> { order.iter().flat_map(|&i| pkgs[i].to_vec()).collect() };

    // Swap two full packages.
    let swapped = join(&[1, 0, 2, 3]);
    assert!(matches!(
        open_all(&key, n as u64, &swapped),
        Err(SseError::PackageAuth { seq: 0 })
    ));
    // Duplicate a package in place of another.
    let dup = join(&[0, 0, 2, 3]);
    assert!(matches!(
        open_all(&key, n as u64, &dup),
        Err(SseError::PackageAuth { seq: 1 })
    ));
    // Drop the last package, claimed size unchanged: truncated.
    let dropped = join(&[0, 1, 2]);
    assert_eq!(
        open_all(&key, n as u64, &dropped).err(),
        Some(SseError::Truncated)
    );
    // Drop the last package and shrink the size to match: the new last package was not final.
    assert!(matches!(
        open_all(&key, 3 * P as u64, &dropped),
        Err(SseError::PackageAuth { seq: 2 })
    ));
    // Append a duplicate of a package after the final one.
    let appended = join(&[0, 1, 2, 3, 2]);
    assert_eq!(
        open_all(&key, n as u64, &appended).err(),
        Some(SseError::TrailingData)
    );
    // Grow the size to claim an appended full package: the old final one is now mid-stream.
    let full = seal_all(sk(&key), Backend::default(), &plain[..3 * P]).expect("seal");
    let mut longer = full.clone();
    longer.extend_from_slice(&full[..SEALED_PACKAGE_SIZE]);
    assert!(matches!(
        open_all(&key, 4 * P as u64, &longer),
        Err(SseError::PackageAuth { seq: 2 })
    ));
    // Truncation inside a package.
    assert_eq!(
        open_all(&key, n as u64, &sealed[..sealed.len() - 1]).err(),
        Some(SseError::Truncated)
    );
    // An empty stream with its one package removed.
    assert_eq!(open_all(&key, 0, &[]).err(), Some(SseError::Truncated));
}

#[test]
fn splicing_from_another_object_or_part_is_detected() {
    let a = object_key(7);
    let b = object_key(8);
    let n = 2 * P + 10;
    let plain = data(n, 4);
    let sa = seal_all(sk(&a), Backend::default(), &plain).expect("seal");
    let sb = seal_all(sk(&b), Backend::default(), &plain).expect("seal");
    let mut spliced = sa.clone();
    spliced[SEALED_PACKAGE_SIZE..2 * SEALED_PACKAGE_SIZE]
        .copy_from_slice(&sb[SEALED_PACKAGE_SIZE..2 * SEALED_PACKAGE_SIZE]);
    assert!(matches!(
        open_all(&a, n as u64, &spliced),
        Err(SseError::PackageAuth { seq: 1 })
    ));
    // Same object key, another part: part keys differ.
    let p1 = seal_all(StreamKey::derive(&a, 1), Backend::default(), &plain).expect("p1");
    let p2 = seal_all(StreamKey::derive(&a, 2), Backend::default(), &plain).expect("p2");
    assert_ne!(p1, p2);
    let mut mixed = p1.clone();
    mixed[..SEALED_PACKAGE_SIZE].copy_from_slice(&p2[..SEALED_PACKAGE_SIZE]);
    assert!(matches!(
        open_range(
            StreamKey::derive(&a, 1),
            Backend::default(),
            n as u64,
            0,
            n as u64,
            &mixed
        ),
        Err(SseError::PackageAuth { seq: 0 })
    ));
    // Wrong key altogether.
    assert!(matches!(
        open_all(&b, n as u64, &sa),
        Err(SseError::PackageAuth { seq: 0 })
    ));
}

#[test]
fn multipart_parts_have_own_keys_and_decrypt_independently() {
    let key = object_key(9);
    let parts: Vec<(u32, Vec<u8>)> =
        vec![(1, data(P + 7, 21)), (2, data(3, 22)), (3, data(2 * P, 23))];
    let k1 = StreamKey::derive(&key, 1);
    let k2 = StreamKey::derive(&key, 2);
    assert_ne!(*k1.key, *k2.key);
    assert_ne!(k1.prefix, k2.prefix);
    assert_ne!(*StreamKey::derive(&key, SINGLE_PART).key, *k1.key);
    // Sealed in "parallel" (any order), stored back to back, each opened alone by its offset.
    let sealed: Vec<Vec<u8>> = parts
        .iter()
        .rev()
        .map(|(n, p)| seal_all(StreamKey::derive(&key, *n), Backend::RustCrypto, p).expect("seal"))
        .rev()
        .collect();
    let object: Vec<u8> = sealed.concat();
    let mut at = 0usize;
    for ((n, p), s) in parts.iter().zip(&sealed) {
        let stream = &object[at..at + s.len()];
        at += s.len();
        let len = p.len() as u64;
        let back = open_range(
            StreamKey::derive(&key, *n),
            Backend::AwsLc,
            len,
            0,
            len,
            stream,
        )
        .expect("part opens alone");
        assert_eq!(&back, p);
        // A range inside the part.
        if p.len() > 10 {
            let r = package_range(len, 5, len - 10).expect("range");
            let got = open_range(
                StreamKey::derive(&key, *n),
                Backend::default(),
                len,
                5,
                len - 10,
                &stream[r.cipher.start as usize..r.cipher.end as usize],
            )
            .expect("ranged");
            assert_eq!(got, &p[5..p.len() - 5]);
        }
    }
}

#[test]
fn empty_stream_has_one_authenticated_package() {
    let key = object_key(10);
    let sealed = seal_all(sk(&key), Backend::default(), &[]).expect("seal");
    assert_eq!(sealed.len(), TAG_LEN);
    assert_eq!(open_all(&key, 0, &sealed).expect("open"), Vec::<u8>::new());
    let other = seal_all(sk(&object_key(11)), Backend::default(), &[]).expect("seal");
    assert!(matches!(
        open_all(&key, 0, &other),
        Err(SseError::PackageAuth { seq: 0 })
    ));
}

#[test]
fn multipart_ranges_span_parts() {
    let key = object_key(12);
    let parts: Vec<(u32, Vec<u8>)> =
        vec![(1, data(P + 7, 31)), (2, data(5, 32)), (3, data(2 * P, 33))];
    let sizes: Vec<(u32, u64)> = parts.iter().map(|(n, p)| (*n, p.len() as u64)).collect();
    let plain: Vec<u8> = parts.iter().flat_map(|(_, p)| p.clone()).collect();
    let object: Vec<u8> = parts
        .iter()
        .flat_map(|(n, p)| {
            seal_all(StreamKey::derive(&key, *n), Backend::default(), p).expect("seal")
        })
        .collect();
    let total = plain.len() as u64;
    for (off, len) in [
        (0, total),
        (P as u64, 20),
        (P as u64 + 6, 3),
        (P as u64 + 7, 5),
        (10, total - 20),
        (total - 1, 1),
    ] {
        let mut got = Vec::new();
        for pr in multipart_ranges(&sizes, off, len).expect("ranges") {
            let c = &object[(pr.stream_offset + pr.range.cipher.start) as usize
                ..(pr.stream_offset + pr.range.cipher.end) as usize];
            let mut dec = Decryptor::new(
                StreamKey::derive(&key, pr.part),
                Backend::default(),
                &pr.range,
            )
            .expect("dec");
            for b in dec.update(BytesMut::from(c)).expect("open") {
                got.extend_from_slice(&b);
            }
            dec.finish().expect("complete");
        }
        assert_eq!(
            got,
            &plain[off as usize..(off + len) as usize],
            "{off}+{len}"
        );
    }
    assert_eq!(multipart_ranges(&sizes, 3, 0).expect("empty"), vec![]);
    assert!(matches!(
        multipart_ranges(&sizes, total, 1),
        Err(SseError::InvalidRange { .. })
    ));
}

#[test]
fn whole_packages_open_in_place() {
    let key = object_key(4);
    let plain = data(3 * P + 9, 6);
    let sealed = seal_all(sk(&key), Backend::default(), &plain).expect("seal");
    let r = package_range(plain.len() as u64, 0, plain.len() as u64).expect("range");
    let mut dec = Decryptor::new(sk(&key), Backend::default(), &r).expect("dec");
    // Two whole packages and half of the third in the first chunk.
    let split = 2 * SEALED_PACKAGE_SIZE + P / 2;
    let first = BytesMut::from(&sealed[..split]);
    let start = first.as_ptr();
    let mut out = dec.update(first).expect("open");
    assert_eq!(out.len(), 1, "the whole packages leave as one buffer");
    assert_eq!(out[0].as_ptr(), start, "the whole packages were copied");
    out.extend(dec.update(BytesMut::from(&sealed[split..])).expect("open"));
    dec.finish().expect("complete");
    assert_eq!(out.concat(), plain);
}

#[test]
fn part_salts_give_each_upload_of_a_part_its_own_key_and_nonces() {
    let key = object_key(10);
    let plain = data(P + 5, 31);
    let unsalted = StreamKey::derive(&key, 1);
    let a = StreamKey::derive_salted(&key, 1, &[1; 16]);
    let b = StreamKey::derive_salted(&key, 1, &[2; 16]);
    assert_ne!(*a.key, *b.key);
    assert_ne!(a.prefix, b.prefix);
    assert_ne!(*a.key, *unsalted.key);
    // An empty salt is the unsalted key of parts written before salts.
    assert_eq!(*StreamKey::derive_salted(&key, 1, &[]).key, *unsalted.key);
    let sa = seal_all(a, Backend::default(), &plain).expect("seal a");
    let sb = seal_all(b, Backend::default(), &plain).expect("seal b");
    assert_ne!(sa, sb, "same plaintext, same part number, other salt");
    let range = package_range(plain.len() as u64, 0, plain.len() as u64).unwrap();
    let mut dec = Decryptor::new(
        StreamKey::derive_salted(&key, 1, &[1; 16]),
        Backend::default(),
        &range,
    )
    .unwrap();
    let mut out = Vec::new();
    for chunk in dec.update(BytesMut::from(&sa[..])).unwrap() {
        out.extend_from_slice(&chunk);
    }
    dec.finish().unwrap();
    assert_eq!(out, plain);
}
