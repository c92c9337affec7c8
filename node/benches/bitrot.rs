//! HighwayHash-256 bitrot protection throughput on a 1 MiB shard block: hashing on write, verifying on read.
//!
//! `cargo bench -p cairn-node --bench bitrot`

use std::hint::black_box;
use std::time::Duration;

use cairn_node::bitrot;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LEN: usize = 1 << 20;

fn chunk() -> Vec<u8> {
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

fn bitrot_1mib(c: &mut Criterion) {
    let chunk = chunk();
    let mut stored = Vec::with_capacity(bitrot::HASH_LEN + LEN);
    bitrot::append_block(&mut stored, &chunk);

    let mut group = c.benchmark_group("bitrot_1MiB");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.bench_function("hash", |b| b.iter(|| bitrot::hash(black_box(&chunk))));
    group.bench_function("verify_block", |b| {
        b.iter(|| {
            bitrot::verify_block(black_box(&stored), LEN)
                .map(<[u8]>::len)
                .unwrap_or_else(|e| panic!("verify: {e}"))
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = bitrot_1mib
}
criterion_main!(benches);
