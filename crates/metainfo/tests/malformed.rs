//! A table of malformed torrents: each gives its own typed error, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test and bench code: a panic is the failure report"
)]

mod support;

use shoal_bencode::{DecodeErrorKind, Dict, Value, decode, encode};
use shoal_metainfo::{GeometryError, MetaVersion, MetainfoError, PathError, Torrent};
use support::{build, options};

const K16: u64 = 16 * 1024;

fn valid(version: MetaVersion) -> Vec<u8> {
    let files = [
        ("a.bin", 3 * K16 + 5),
        ("dir/b.bin", K16),
        ("dir/c.txt", 100),
    ];
    build("pkg", &files, false, options(version)).to_bytes()
}

/// `bytes` decoded, changed by `change`, encoded again.
fn mutate(bytes: &[u8], change: impl FnOnce(&mut Dict<'static>)) -> Vec<u8> {
    let mut root = decode(bytes).unwrap().into_owned();
    change(root.as_dict_mut().unwrap());
    encode(&root)
}

fn info<'r>(root: &'r mut Dict<'static>) -> &'r mut Dict<'static> {
    root.get_mut(b"info").unwrap().as_dict_mut().unwrap()
}

fn v1_file<'r>(root: &'r mut Dict<'static>, i: usize) -> &'r mut Dict<'static> {
    match info(root).get_mut(b"files").unwrap() {
        Value::List(files) => files[i].as_dict_mut().unwrap(),
        _ => panic!("files is a list"),
    }
}

fn parse_err(bytes: &[u8]) -> MetainfoError {
    match Torrent::from_bytes(bytes) {
        Ok(t) => panic!("parsed: {:?}", t.info().name),
        Err(e) => e,
    }
}

#[test]
fn the_valid_baselines_parse() {
    for version in [MetaVersion::V1, MetaVersion::V2, MetaVersion::Hybrid] {
        Torrent::from_bytes(&valid(version)).unwrap();
    }
}

#[test]
fn bencode_level_damage() {
    let good = valid(MetaVersion::Hybrid);
    let truncated = &good[..good.len() / 2];
    assert!(
        matches!(parse_err(truncated), MetainfoError::Bencode(e) if e.kind == DecodeErrorKind::UnexpectedEof)
    );

    let unsorted = b"d4:infod4:name1:x6:lengthi1eee";
    assert!(
        matches!(parse_err(unsorted), MetainfoError::Bencode(e) if e.kind == DecodeErrorKind::UnsortedKeys)
    );

    let huge = b"d4:info99999999999:e";
    assert!(
        matches!(parse_err(huge), MetainfoError::Bencode(e) if matches!(e.kind, DecodeErrorKind::LengthExceedsInput { .. }))
    );

    let bomb = [
        b"d4:info".as_slice(),
        &b"l".repeat(10_000),
        &b"e".repeat(10_001),
    ]
    .concat();
    assert!(
        matches!(parse_err(&bomb), MetainfoError::Bencode(e) if matches!(e.kind, DecodeErrorKind::DepthLimit { .. }))
    );

    let not_dict = b"li1ee";
    assert!(matches!(
        parse_err(not_dict),
        MetainfoError::WrongType { .. }
    ));
}

#[test]
fn piece_length_rules() {
    let zero = mutate(&valid(MetaVersion::V1), |r| {
        info(r).insert(b"piece length".to_vec(), Value::Int(0));
    });
    assert!(matches!(
        parse_err(&zero),
        MetainfoError::PieceLength(GeometryError::PieceLengthOutOfRange(0))
    ));

    for bad in [20_000, 8192] {
        let v2 = mutate(&valid(MetaVersion::V2), |r| {
            info(r).insert(b"piece length".to_vec(), Value::Int(bad));
        });
        assert!(
            matches!(parse_err(&v2), MetainfoError::PieceLength(GeometryError::PieceLengthNotV2(n)) if n == bad as u64),
            "{bad}"
        );
    }
    let negative = mutate(&valid(MetaVersion::V1), |r| {
        info(r).insert(b"piece length".to_vec(), Value::Int(-16384));
    });
    assert!(
        matches!(parse_err(&negative), MetainfoError::OutOfRange { field, value: -16384 } if field == "info.piece length")
    );
}

#[test]
fn unsafe_paths() {
    let dotdot = mutate(&valid(MetaVersion::V1), |r| {
        v1_file(r, 1).insert(
            b"path".to_vec(),
            Value::List(vec![Value::from(".."), Value::from("etc")]),
        );
    });
    match parse_err(&dotdot) {
        MetainfoError::Path {
            field,
            source: PathError::DotOrDotDot(_),
        } => assert_eq!(field, "info.files[1].path"),
        other => panic!("{other:?}"),
    }

    let absolute = mutate(&valid(MetaVersion::V1), |r| {
        v1_file(r, 0).insert(
            b"path".to_vec(),
            Value::List(vec![Value::from("/etc/passwd")]),
        );
    });
    assert!(matches!(
        parse_err(&absolute),
        MetainfoError::Path {
            source: PathError::ForbiddenChar { ch: '/', .. },
            ..
        }
    ));

    let name = mutate(&valid(MetaVersion::V1), |r| {
        info(r).insert(b"name".to_vec(), Value::from(".."));
    });
    assert!(matches!(parse_err(&name), MetainfoError::Path { field, .. } if field == "info.name"));

    let tree = mutate(&valid(MetaVersion::V2), |r| {
        let tree = info(r)
            .get_mut(b"file tree")
            .unwrap()
            .as_dict_mut()
            .unwrap();
        let dir = tree.remove(b"dir").unwrap();
        tree.insert(b"..".to_vec(), dir);
    });
    assert!(matches!(
        parse_err(&tree),
        MetainfoError::Path {
            source: PathError::DotOrDotDot(_),
            ..
        }
    ));

    let empty_list = mutate(&valid(MetaVersion::V1), |r| {
        v1_file(r, 0).insert(b"path".to_vec(), Value::List(vec![]));
    });
    assert!(matches!(
        parse_err(&empty_list),
        MetainfoError::Path {
            source: PathError::NoComponents,
            ..
        }
    ));

    let twice = mutate(&valid(MetaVersion::V1), |r| {
        v1_file(r, 2).insert(
            b"path".to_vec(),
            Value::List(vec![Value::from("dir"), Value::from("b.bin")]),
        );
    });
    assert!(matches!(
        parse_err(&twice),
        MetainfoError::PathConflict { .. }
    ));
}

#[test]
fn v1_piece_hashes() {
    let ragged = mutate(&valid(MetaVersion::V1), |r| {
        info(r).insert(b"pieces".to_vec(), Value::from(vec![0u8; 41]));
    });
    assert!(matches!(
        parse_err(&ragged),
        MetainfoError::PiecesNotWhole { len: 41 }
    ));

    let short = mutate(&valid(MetaVersion::V1), |r| {
        info(r).insert(b"pieces".to_vec(), Value::from(vec![0u8; 40]));
    });
    assert!(matches!(
        parse_err(&short),
        MetainfoError::PieceCount { found: 2, .. }
    ));
}

#[test]
fn structural_contradictions() {
    let no_name = mutate(&valid(MetaVersion::V1), |r| {
        info(r).remove(b"name");
    });
    assert!(
        matches!(parse_err(&no_name), MetainfoError::Missing { field } if field == "info.name")
    );

    let both = mutate(&valid(MetaVersion::V1), |r| {
        info(r).insert(b"length".to_vec(), Value::Int(5));
    });
    assert!(matches!(
        parse_err(&both),
        MetainfoError::Contradiction { .. }
    ));

    let version3 = mutate(&valid(MetaVersion::V2), |r| {
        info(r).insert(b"meta version".to_vec(), Value::Int(3));
    });
    assert!(matches!(
        parse_err(&version3),
        MetainfoError::UnsupportedVersion(3)
    ));

    let negative = mutate(&valid(MetaVersion::V1), |r| {
        v1_file(r, 0).insert(b"length".to_vec(), Value::Int(-1));
    });
    assert!(matches!(
        parse_err(&negative),
        MetainfoError::OutOfRange { value: -1, .. }
    ));

    let symlink = mutate(&valid(MetaVersion::V1), |r| {
        v1_file(r, 0).insert(b"attr".to_vec(), Value::from("l"));
    });
    assert!(matches!(parse_err(&symlink), MetainfoError::Symlink { .. }));

    let empty = b"d4:infod6:lengthi0e4:name1:x12:piece lengthi16384e6:pieces0:ee";
    assert!(matches!(parse_err(empty), MetainfoError::Empty));

    let overflow = mutate(&valid(MetaVersion::V1), |r| {
        v1_file(r, 0).insert(b"length".to_vec(), Value::Int(i64::MAX));
        v1_file(r, 1).insert(b"length".to_vec(), Value::Int(i64::MAX));
    });
    assert!(matches!(parse_err(&overflow), MetainfoError::TooLarge));
}

#[test]
fn hybrid_mismatch() {
    let longer = mutate(&valid(MetaVersion::Hybrid), |r| {
        v1_file(r, 0).insert(b"length".to_vec(), Value::Int(3 * K16 as i64 + 6));
    });
    assert!(matches!(
        parse_err(&longer),
        MetainfoError::HybridMismatch {
            problem: "lengths differ",
            ..
        }
    ));

    let no_padding = mutate(&valid(MetaVersion::Hybrid), |r| {
        match info(r).get_mut(b"files").unwrap() {
            Value::List(files) => files.remove(1), // the padding file after a.bin
            _ => panic!(),
        };
    });
    assert!(matches!(
        parse_err(&no_padding),
        MetainfoError::HybridMismatch { path, problem: "file does not start on a piece boundary (padding missing)" }
            if path == "dir/b.bin"
    ));
}

/// Applies `change` to the bytes of the first piece layer.
fn change_first_layer(root: &mut Dict<'static>, change: impl FnOnce(&mut Vec<u8>)) {
    let layers = root
        .get_mut(b"piece layers")
        .unwrap()
        .as_dict_mut()
        .unwrap();
    let (key, mut layer) = layers
        .iter()
        .next()
        .map(|(k, v)| (k.to_vec(), v.as_bytes().unwrap().to_vec()))
        .unwrap();
    change(&mut layer);
    layers.insert(key, Value::from(layer));
}

#[test]
fn mismatched_piece_layers() {
    let good = valid(MetaVersion::V2);
    let flip = mutate(&good, |r| change_first_layer(r, |layer| layer[0] ^= 1));
    assert!(
        matches!(parse_err(&flip), MetainfoError::PieceLayer { problem, .. } if problem.contains("do not add up"))
    );

    let short = mutate(&good, |r| change_first_layer(r, |layer| layer.truncate(32)));
    assert!(
        matches!(parse_err(&short), MetainfoError::PieceLayer { problem, .. } if problem.contains("piece count"))
    );

    let stranger = mutate(&good, |r| {
        let layers = r.get_mut(b"piece layers").unwrap().as_dict_mut().unwrap();
        layers.insert(vec![9u8; 32], Value::from(vec![0u8; 64]));
    });
    assert!(
        matches!(parse_err(&stranger), MetainfoError::PieceLayer { problem, .. } if problem.contains("no file"))
    );
}
