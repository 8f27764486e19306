//! Shared test support: torrents built in memory from synthetic file contents.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test and bench code: a panic is the failure report"
)]
#![allow(dead_code)]

use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
use shoal_metainfo::{MetaVersion, PathComponent, Torrent, TorrentPath};

/// The byte at `offset` of synthetic file `seed`.
pub fn byte(seed: u64, offset: u64) -> u8 {
    (seed
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(offset)
        .wrapping_mul(2_654_435_761)
        >> 13) as u8
}

/// Builds a torrent over files `(path, length)` whose contents are [`byte`] of their index.
pub fn build(
    name: &str,
    files: &[(&str, u64)],
    single_file: bool,
    options: CreateOptions,
) -> Torrent {
    let inputs: Vec<InputFile> = files
        .iter()
        .map(|(path, length)| InputFile {
            path: TorrentPath::parse(path).unwrap(),
            length: *length,
            executable: false,
        })
        .collect();
    build_inputs(name, inputs, single_file, options)
}

/// Builds a torrent over `inputs`; contents are [`byte`] keyed by the input's path.
pub fn build_inputs(
    name: &str,
    inputs: Vec<InputFile>,
    single_file: bool,
    options: CreateOptions,
) -> Torrent {
    let plan = Plan::new(
        PathComponent::new(name).unwrap(),
        inputs,
        single_file,
        options,
    )
    .unwrap();
    let seeds: Vec<u64> = plan.inputs().iter().map(|i| seed_of(&i.path)).collect();
    let results: Vec<_> = plan
        .units()
        .iter()
        .enumerate()
        .map(|(i, unit)| {
            let data: Vec<u8> = unit
                .reads
                .iter()
                .flat_map(|r| {
                    (r.offset..r.offset + r.len)
                        .map(|o| byte(seeds[r.file], o))
                        .collect::<Vec<_>>()
                })
                .collect();
            unit.hash(i, &data).unwrap()
        })
        .collect();
    plan.finish(&results).unwrap()
}

/// The seed of the synthetic file at `path`.
pub fn seed_of(path: &TorrentPath) -> u64 {
    path.to_string()
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// Options for `version` with a 16 KiB piece length.
pub fn options(version: MetaVersion) -> CreateOptions {
    CreateOptions {
        version,
        piece_length: Some(16 * 1024),
        ..CreateOptions::default()
    }
}
