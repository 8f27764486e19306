//! Round trips: `parse(encode(t)) == t` for every torrent the creator can make, and the info
//! dictionary's canonical encoding is byte-identical to what was parsed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test and bench code: a panic is the failure report"
)]

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use shoal_metainfo::CreateError;
use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
use shoal_metainfo::{Info, MetaVersion, PathComponent, Torrent, TorrentPath};

fn version() -> impl Strategy<Value = MetaVersion> {
    prop_oneof![
        Just(MetaVersion::V1),
        Just(MetaVersion::V2),
        Just(MetaVersion::Hybrid)
    ]
}

fn inputs() -> impl Strategy<Value = Vec<InputFile>> {
    let component = prop_oneof![
        Just("a"),
        Just("b"),
        Just("c.txt"),
        Just("dir"),
        Just("z-last"),
        Just("日本")
    ];
    let path = proptest::collection::vec(component, 1..4).prop_map(|c| c.join("/"));
    let file = (path, 0u64..80_000, any::<bool>());
    proptest::collection::vec(file, 1..6).prop_map(|files| {
        let mut out: Vec<InputFile> = Vec::new();
        for (path, length, executable) in files {
            let path = TorrentPath::parse(&path).unwrap();
            let clashes = out.iter().any(|f| {
                let (a, b) = (f.path.components(), path.components());
                a.starts_with(b) || b.starts_with(a)
            });
            if !clashes {
                out.push(InputFile {
                    path,
                    length,
                    executable,
                });
            }
        }
        if out.iter().all(|f| f.length == 0) {
            out[0].length = 1;
        }
        out
    })
}

fn urls() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-z]{1,8}", 0..3).prop_map(|hosts| {
        hosts
            .into_iter()
            .map(|h| format!("http://{h}.example:6969/announce"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn parse_inverts_encode(
        version in version(),
        inputs in inputs(),
        piece_shift in 0u32..3,
        private in any::<bool>(),
        tiers in proptest::collection::vec(urls(), 0..3),
        web_seeds in urls(),
        comment in proptest::option::of("[ -~]{0,20}"),
        date in proptest::option::of(0i64..2_000_000_000),
    ) {
        let single = inputs.len() == 1 && inputs[0].path.components().len() == 1;
        let options = CreateOptions {
            version,
            piece_length: Some(16_384 << piece_shift),
            private,
            trackers: tiers,
            web_seeds,
            comment,
            created_by: Some("proptest".into()),
            creation_date: date,
        };
        let name = if single { inputs[0].path.to_string() } else { "pkg".to_owned() };
        let torrent = support::build_inputs(&name, inputs.clone(), single, options.clone());
        // Hashing whole files held in memory gives the torrent hashing unit by unit gives.
        let contents: BTreeMap<String, Vec<u8>> = inputs
            .iter()
            .map(|f| {
                let seed = support::seed_of(&f.path);
                (f.path.to_string(), (0..f.length).map(|o| support::byte(seed, o)).collect())
            })
            .collect();
        let plan = Plan::new(PathComponent::new(&name).unwrap(), inputs, single, options).unwrap();
        prop_assert_eq!(&plan.finish_in_memory(|f| &contents[&f.path.to_string()]).unwrap(), &torrent);
        let bytes = torrent.to_bytes();
        let parsed = Torrent::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&parsed, &torrent);
        // The parsed info re-encodes to the very bytes that were hashed.
        prop_assert_eq!(parsed.info().to_bytes(), parsed.info_bytes().to_vec());
        prop_assert_eq!(parsed.to_bytes(), bytes);
        // Geometry agrees with the piece hashes.
        let geometry = parsed.info().geometry().unwrap();
        if version.has_v1() {
            prop_assert_eq!(geometry.piece_count() as usize, parsed.info().pieces.len());
        }
    }
}

#[test]
fn info_alone_round_trips() {
    let torrent = support::build(
        "x",
        &[("x", 5)],
        true,
        support::options(MetaVersion::Hybrid),
    );
    let value = shoal_bencode::decode(torrent.info_bytes()).unwrap();
    let info = Info::from_dict(value.as_dict().unwrap()).unwrap();
    assert_eq!(&info, torrent.info());
}

#[test]
fn content_shorter_than_its_file_is_refused() {
    let input = InputFile {
        path: TorrentPath::parse("x").unwrap(),
        length: 20_000,
        executable: false,
    };
    let plan = Plan::new(
        PathComponent::new("x").unwrap(),
        vec![input],
        true,
        support::options(MetaVersion::Hybrid),
    )
    .unwrap();
    let short = vec![0u8; 19_999];
    assert!(matches!(
        plan.finish_in_memory(|_| &short),
        Err(CreateError::UnitLength { .. })
    ));
}
