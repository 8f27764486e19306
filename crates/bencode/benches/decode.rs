//! Decode throughput on a torrent-shaped document (many files, one large `pieces` string).
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
use shoal_bencode::{Dict, Value, decode, encode};

fn torrent_like(files: usize) -> Vec<u8> {
    let list: Vec<Value<'static>> = (0..files)
        .map(|i| {
            let mut f = Dict::new();
            f.insert(b"length".to_vec(), Value::Int(1 << 20));
            let path = vec![
                Value::from(format!("dir{}", i % 37)),
                Value::from(format!("file-{i}.bin")),
            ];
            f.insert(b"path".to_vec(), Value::List(path));
            Value::Dict(f)
        })
        .collect();
    let mut info = Dict::new();
    info.insert(b"files".to_vec(), Value::List(list));
    info.insert(b"name".to_vec(), Value::from("bench"));
    info.insert(b"piece length".to_vec(), Value::Int(1 << 18));
    info.insert(b"pieces".to_vec(), Value::from(vec![7u8; 20 * files * 4]));
    let mut root = Dict::new();
    root.insert(
        b"announce".to_vec(),
        Value::from("http://tracker.example:6969/announce"),
    );
    root.insert(b"info".to_vec(), Value::Dict(info));
    encode(&Value::Dict(root))
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("bencode_decode");
    for files in [10usize, 10_000] {
        let bytes = torrent_like(files);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("{files}_files"), |b| {
            b.iter(|| decode(std::hint::black_box(&bytes)).map(|v| v.as_dict().map(Dict::len)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
