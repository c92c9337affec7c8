//! Reed-Solomon throughput on 1 MiB erasure blocks: encode for 4+2 and 12+4, and reconstruct after losing two
//! shards (two data shards, as a degraded read; one data and one parity, as a heal).
//!
//! `cargo bench -p cairn-node --bench erasure`

use std::hint::black_box;
use std::time::Duration;

use cairn_node::erasure::{Erasure, BLOCK_SIZE};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

const GEOMETRIES: [(usize, usize); 2] = [(4, 2), (12, 4)];

/// A block of non-repeating bytes (xorshift64).
fn block() -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    (0..BLOCK_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn erasure(data: usize, parity: usize) -> Erasure {
    Erasure::new(data, parity).unwrap_or_else(|e| panic!("{data}+{parity}: {e}"))
}

fn encode(c: &mut Criterion) {
    let block = block();
    let mut group = c.benchmark_group("erasure_encode_1MiB");
    group.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    for (data, parity) in GEOMETRIES {
        let e = erasure(data, parity);
        group.bench_function(
            BenchmarkId::from_parameter(format!("{data}+{parity}")),
            |b| {
                b.iter(|| {
                    e.encode(black_box(&block))
                        .unwrap_or_else(|err| panic!("encode: {err}"))
                });
            },
        );
    }
    group.finish();
}

fn reconstruct(c: &mut Criterion) {
    let block = block();
    let mut group = c.benchmark_group("erasure_reconstruct_1MiB");
    group.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    for (data, parity) in GEOMETRIES {
        let e = erasure(data, parity);
        let full: Vec<Option<Vec<u8>>> = e
            .encode(&block)
            .unwrap_or_else(|err| panic!("encode: {err}"))
            .into_iter()
            .map(Some)
            .collect();
        // (label, lost shards, also rebuild parity)
        let cases = [
            ("lost_2_data", [0, 1], false),
            ("lost_data_and_parity_heal", [0, data], true),
        ];
        for (label, lost, with_parity) in cases {
            let id = BenchmarkId::new(label, format!("{data}+{parity}"));
            group.bench_function(id, |b| {
                b.iter_batched(
                    || {
                        let mut shards = full.clone();
                        for i in lost {
                            shards[i] = None;
                        }
                        shards
                    },
                    |mut shards| {
                        e.reconstruct(&mut shards, with_parity)
                            .unwrap_or_else(|err| panic!("reconstruct: {err}"));
                        shards
                    },
                    BatchSize::LargeInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = encode, reconstruct
}
criterion_main!(benches);
