//! Shared test support: torrents built in memory with known contents, and an independent
//! model of piece space (what each piece must hold) to check stores and layouts against.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]
#![allow(dead_code)]

use sha1::{Digest, Sha1};
use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
use shoal_metainfo::{Info, MetaVersion, PathComponent, TorrentPath};
use shoal_storage::PieceStore;

pub const BLOCK: usize = 16 * 1024;

/// The byte at `offset` of the file whose path hashes to `seed`.
pub fn byte(seed: u64, offset: u64) -> u8 {
    (seed
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(offset)
        .wrapping_mul(2_654_435_761)
        >> 13) as u8
}

fn seed_of(path: &TorrentPath) -> u64 {
    path.to_string()
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// A torrent and what its bytes are.
pub struct Fixture {
    pub info: Info,
    /// Contents by `info.files` index (zeros for padding files).
    pub contents: Vec<Vec<u8>>,
    /// Piece space as this module lays it out, padding and v2 gaps as zeros.
    pub image: Vec<u8>,
    /// For each byte of `image`: the `info.files` index and offset holding it, `None` for
    /// padding and gaps.
    pub owners: Vec<Option<(usize, u64)>>,
}

/// A torrent of `version` over `files` (`(path, length)`) with `piece_length`.
pub fn fixture(
    version: MetaVersion,
    files: &[(&str, u64)],
    single_file: bool,
    piece_length: u64,
) -> Fixture {
    let inputs = files
        .iter()
        .map(|(path, length)| InputFile {
            path: TorrentPath::parse(path).unwrap(),
            length: *length,
            executable: false,
        })
        .collect();
    fixture_of(version, inputs, single_file, piece_length)
}

/// A torrent of `version` over `inputs` with `piece_length`, named `artifact`.
pub fn fixture_of(
    version: MetaVersion,
    inputs: Vec<InputFile>,
    single_file: bool,
    piece_length: u64,
) -> Fixture {
    let name = if single_file {
        inputs[0].path.components()[0].clone()
    } else {
        PathComponent::new("artifact").unwrap()
    };
    let options = CreateOptions {
        version,
        piece_length: Some(piece_length),
        ..CreateOptions::default()
    };
    let plan = Plan::new(name, inputs, single_file, options).unwrap();
    let seeds: Vec<u64> = plan.inputs().iter().map(|i| seed_of(&i.path)).collect();
    let results: Vec<_> = plan
        .units()
        .iter()
        .enumerate()
        .map(|(i, unit)| {
            let data: Vec<u8> = unit
                .reads
                .iter()
                .flat_map(|r| (r.offset..r.offset + r.len).map(|o| byte(seeds[r.file], o)))
                .collect();
            unit.hash(i, &data).unwrap()
        })
        .collect();
    let info = plan.finish(&results).unwrap().info().clone();

    let contents: Vec<Vec<u8>> = info
        .files
        .iter()
        .map(|f| {
            let seed = seed_of(&f.path);
            (0..f.length)
                .map(|o| if f.attr.pad { 0 } else { byte(seed, o) })
                .collect()
        })
        .collect();
    let piece = piece_length as usize;
    let mut image = Vec::new();
    let mut owners = Vec::new();
    for (index, (file, bytes)) in info.files.iter().zip(&contents).enumerate() {
        if version == MetaVersion::V2 && !bytes.is_empty() {
            let aligned = image.len().div_ceil(piece) * piece;
            image.resize(aligned, 0);
            owners.resize(aligned, None);
        }
        image.extend_from_slice(bytes);
        owners.extend((0..file.length).map(|o| (!file.attr.pad).then_some((index, o))));
    }
    if version == MetaVersion::V2 {
        // The last v2 piece is addressable to its 16 KiB block boundary (zeros).
        let end = image
            .len()
            .next_multiple_of(BLOCK)
            .min(image.len().div_ceil(piece) * piece);
        image.resize(end, 0);
        owners.resize(end, None);
    }
    Fixture {
        info,
        contents,
        image,
        owners,
    }
}

impl Fixture {
    pub fn piece_length(&self) -> usize {
        self.info.piece_length.get() as usize
    }

    pub fn piece_count(&self) -> u32 {
        self.info.geometry().unwrap().piece_count()
    }

    /// The data bytes of `piece` (what a v2 peer sends).
    pub fn data_len(&self, piece: u32) -> usize {
        let g = self.info.geometry().unwrap();
        g.piece_len(g.piece(piece).unwrap()) as usize
    }

    /// The bytes a request may address in `piece`: v1 and hybrid pieces run to the next piece
    /// (padding included), v2 pieces end at the 16 KiB block boundary after their data.
    pub fn span(&self, piece: u32) -> usize {
        let start = piece as usize * self.piece_length();
        match self.info.version {
            MetaVersion::V2 => self
                .data_len(piece)
                .next_multiple_of(BLOCK)
                .min(self.piece_length()),
            _ => (self.image.len() - start).min(self.piece_length()),
        }
    }

    /// The expected bytes of `piece`, its whole span.
    pub fn piece(&self, piece: u32) -> &[u8] {
        let start = piece as usize * self.piece_length();
        &self.image[start..start + self.span(piece)]
    }

    /// Writes the data of every piece in 16 KiB blocks, as peers deliver it.
    pub fn write_all(&self, store: &dyn PieceStore) {
        for piece in 0..self.piece_count() {
            self.write_piece(store, piece);
        }
    }

    pub fn write_piece(&self, store: &dyn PieceStore, piece: u32) {
        let data = &self.piece(piece)[..self.data_len(piece)];
        for (i, block) in data.chunks(BLOCK).enumerate() {
            store.write(piece, (i * BLOCK) as u32, block).unwrap();
        }
    }

    /// Reads every piece's span and checks it.
    pub fn check_all(&self, store: &dyn PieceStore) {
        for piece in 0..self.piece_count() {
            let mut buf = vec![0xAA; self.span(piece)];
            store.read(piece, 0, &mut buf).unwrap();
            assert!(buf == self.piece(piece), "piece {piece} differs");
        }
    }

    /// Checks the model against the torrent's own SHA-1 piece hashes (v1 and hybrid).
    pub fn check_model(&self) {
        for (piece, hash) in self.info.pieces.iter().enumerate() {
            let digest: [u8; 20] = Sha1::digest(self.piece(piece as u32)).into();
            assert_eq!(&digest, hash.as_bytes(), "model of piece {piece}");
        }
    }
}

/// The torrent shapes every store must handle: pieces spanning files, odd v1 piece lengths,
/// empty files (first, middle), v2 alignment, hybrid padding, single files.
pub fn shapes() -> Vec<(&'static str, Fixture)> {
    let multi: &[(&str, u64)] = &[
        ("0", 0),
        ("a", 40_000),
        ("b/c", 0),
        ("b/d", 5),
        ("c", 100),
        ("e", 2 * 32_768),
        ("f", 70_000),
    ];
    vec![
        ("v1 multi", fixture(MetaVersion::V1, multi, false, 20_000)),
        (
            "v1 single",
            fixture(MetaVersion::V1, &[("f", 50_000)], true, 16_384),
        ),
        ("v2 multi", fixture(MetaVersion::V2, multi, false, 32_768)),
        (
            "v2 single",
            fixture(MetaVersion::V2, &[("f", 50_000)], true, 16_384),
        ),
        (
            "hybrid multi",
            fixture(MetaVersion::Hybrid, multi, false, 32_768),
        ),
        (
            "hybrid single",
            fixture(MetaVersion::Hybrid, &[("f", 50_000)], true, 16_384),
        ),
    ]
}
