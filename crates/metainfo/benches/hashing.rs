//! Single-thread hashing throughput of one hash unit (the inner loop of torrent creation and,
//! later, of piece verification): v1 SHA-1, v2 Merkle, and both in one pass.
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
use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
use shoal_metainfo::{MetaVersion, PathComponent, TorrentPath};

fn bench_units(c: &mut Criterion) {
    let piece: usize = 4 << 20;
    let data: Vec<u8> = (0..piece * 2).map(|i| (i % 251) as u8).collect();
    let mut group = c.benchmark_group("hash_unit_4MiB");
    group.throughput(Throughput::Bytes(piece as u64));
    for version in [MetaVersion::V1, MetaVersion::V2, MetaVersion::Hybrid] {
        let name = PathComponent::new("f").expect("a valid name");
        let input = InputFile {
            path: TorrentPath::new(vec![name.clone()]).expect("a valid path"),
            length: data.len() as u64,
            executable: false,
        };
        let options = CreateOptions {
            version,
            piece_length: Some(piece as u64),
            ..CreateOptions::default()
        };
        let plan = Plan::new(name, vec![input], true, options).expect("a plan");
        let unit = &plan.units()[0];
        group.bench_function(version.as_str(), |b| {
            b.iter(|| unit.hash(0, &data[..piece]))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_units);
criterion_main!(benches);
