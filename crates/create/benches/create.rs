//! Hashing throughput of torrent creation (v1, v2, hybrid) over a page-cached 256 MiB file,
//! on every core. `bench/torrent-create.sh` compares the 1 GiB case against `openssl dgst`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench code: a panic is the failure report"
)]
#![allow(
    missing_docs,
    reason = "criterion_group! generates undocumented functions"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shoal_metainfo::MetaVersion;
use shoal_metainfo::create::CreateOptions;

fn bench_create(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("payload.bin");
    let size: usize = 256 << 20;
    let data: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    std::fs::write(&path, &data).expect("writing the payload");
    let source = shoal_create::scan(&path).expect("scanning the payload");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut group = c.benchmark_group("torrent_create_256MiB");
    group.throughput(Throughput::Bytes(size as u64));
    group.sample_size(10);
    for (label, version, piece) in [
        ("v1_256KiB", MetaVersion::V1, 256 << 10),
        ("v2_4MiB", MetaVersion::V2, 4 << 20),
        ("hybrid_4MiB", MetaVersion::Hybrid, 4 << 20),
        ("hybrid_64KiB", MetaVersion::Hybrid, 64 << 10),
    ] {
        let options = CreateOptions {
            version,
            piece_length: Some(piece),
            ..CreateOptions::default()
        };
        group.bench_function(label, |b| {
            b.iter(|| {
                shoal_create::create(&source, options.clone(), None, threads, &|_| {})
                    .expect("creating")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_create);
criterion_main!(benches);
