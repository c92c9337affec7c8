//! Package cipher throughput on one core: sealing and opening a 64 MiB stream in 64 KiB packages,
//! for both AES-256-GCM backends (they write the same format). Fed in 1 MiB chunks and dropped as
//! produced, as the streaming PUT/GET path does; `raw` is the bare AEAD on 64 KiB buffers.
//!
//! `cargo bench -p cairn-node --bench sse`

use std::hint::black_box;
use std::time::Duration;

use cairn_node::sse::package::{
    package_range, seal_all, Backend, Decryptor, Encryptor, StreamKey, PACKAGE_SIZE, SINGLE_PART,
};
use cairn_node::sse::ObjectKey;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LEN: usize = 64 << 20;
const CHUNK: usize = 1 << 20;

fn input() -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    (0..LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn seal(key: &ObjectKey, backend: Backend, plain: &[u8]) -> usize {
    let Ok(mut enc) = Encryptor::new(StreamKey::derive(key, SINGLE_PART), backend) else {
        return 0;
    };
    let mut n = 0;
    for c in plain.chunks(CHUNK) {
        for p in enc.update(c).unwrap_or_default() {
            n += black_box(p).len();
        }
    }
    n + enc.finish().map(|p| p.len()).unwrap_or(0)
}

fn open(key: &ObjectKey, backend: Backend, sealed: &[u8]) -> usize {
    let Ok(range) = package_range(LEN as u64, 0, LEN as u64) else {
        return 0;
    };
    let Ok(mut dec) = Decryptor::new(StreamKey::derive(key, SINGLE_PART), backend, &range) else {
        return 0;
    };
    let mut n = 0;
    for c in sealed.chunks(CHUNK) {
        // The copy stands for the read that fills the buffer; decryption then runs in place.
        match dec.update(bytes::BytesMut::from(c)) {
            Ok(v) => v.into_iter().for_each(|p| n += black_box(p).len()),
            Err(e) => panic!("open: {e}"),
        }
    }
    dec.finish()
        .map(|()| n)
        .unwrap_or_else(|e| panic!("open: {e}"))
}

fn package_cipher(c: &mut Criterion) {
    let plain = input();
    let key = ObjectKey::from_bytes([0x42; 32]);
    let mut group = c.benchmark_group("sse_64MiB");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(10);
    for (name, backend) in [
        ("aes-gcm", Backend::RustCrypto),
        ("aws-lc-rs", Backend::AwsLc),
    ] {
        let sealed = seal_all(StreamKey::derive(&key, SINGLE_PART), backend, &plain)
            .unwrap_or_else(|e| panic!("seal: {e}"));
        assert_eq!(open(&key, backend, &sealed), LEN);
        group.bench_function(format!("seal/{name}"), |b| {
            b.iter(|| seal(&key, backend, black_box(&plain)))
        });
        group.bench_function(format!("open/{name}"), |b| {
            b.iter(|| open(&key, backend, black_box(&sealed)))
        });
        let cipher = backend
            .cipher(&[7u8; 32])
            .unwrap_or_else(|e| panic!("key: {e}"));
        let mut buf = plain.clone();
        group.bench_function(format!("raw_seal/{name}"), |b| {
            b.iter(|| {
                for (i, c) in buf.chunks_mut(PACKAGE_SIZE).enumerate() {
                    let mut n = [0u8; 12];
                    n[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    let _ = black_box(cipher.seal(&n, b"aad", c));
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = package_cipher
}
criterion_main!(benches);
