//! Creating torrents from files on disk: the I/O half of `shoal_metainfo::create`.
//!
//! [`scan`] walks a file or directory into a [`Source`]; [`create`] plans the torrent, reads
//! every hash unit with positional reads on one thread per core, and assembles the result.
//! All hashing decisions live in `shoal_metainfo`; this crate only moves bytes.
//!
//! Symbolic links are followed (a link to a file contributes the file's bytes); a link back to
//! a directory being walked is refused as a loop, and so is nesting deeper than [`MAX_DEPTH`].
//! Files that are neither regular files nor directories (sockets, FIFOs, devices) are refused
//! rather than skipped, so a torrent never silently leaves something out.
#![forbid(unsafe_code)]

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_metainfo::create::{CreateOptions, InputFile, Plan, UnitHash};
use shoal_metainfo::{CreateError, PathComponent, PathError, Torrent, TorrentPath};

/// The deepest directory nesting [`scan`] follows.
pub const MAX_DEPTH: usize = 64;

/// Why a torrent could not be created from disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file name that cannot go into a torrent (see `shoal_metainfo::path`).
    #[error("{}: this name cannot go into a torrent", path.display())]
    BadName {
        /// The offending path.
        path: PathBuf,
        /// The rule it breaks.
        #[source]
        source: PathError,
    },
    /// A socket, FIFO or device.
    #[error("{}: not a regular file or directory", path.display())]
    NotRegular {
        /// The offending path.
        path: PathBuf,
    },
    /// Directories nested deeper than [`MAX_DEPTH`].
    #[error("{}: directories nest deeper than {MAX_DEPTH} levels", path.display())]
    TooDeep {
        /// Where the limit was reached.
        path: PathBuf,
    },
    /// A symbolic link to a directory that contains it.
    #[error("{}: symbolic link loop (it leads back to a directory being walked)", path.display())]
    SymlinkLoop {
        /// The link.
        path: PathBuf,
    },
    /// A file whose size changed while it was being hashed.
    #[error("{}: the file changed while it was being hashed; try again once it is stable", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// The torrent itself could not be planned or assembled.
    #[error(transparent)]
    Plan(#[from] CreateError),
}

/// Files to put in a torrent, found by [`scan`].
#[derive(Clone, Debug)]
pub struct Source {
    /// The directory the input paths are relative to, or the single file itself.
    root: PathBuf,
    /// The torrent's name: the file or directory name.
    pub name: PathComponent,
    /// True when the scanned path was a file.
    pub single_file: bool,
    /// The files, relative to `root`.
    pub files: Vec<InputFile>,
}

impl Source {
    /// The path on disk of `input`.
    pub fn disk_path(&self, input: &InputFile) -> PathBuf {
        if self.single_file {
            self.root.clone()
        } else {
            self.root.join(input.path.to_path_buf())
        }
    }

    /// The total size in bytes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }
}

/// Walks `path`: a file becomes a single-file source, a directory a multi-file one.
///
/// # Errors
/// [`Error::Io`] for unreadable paths, [`Error::BadName`] for names a torrent cannot carry,
/// [`Error::NotRegular`] and [`Error::TooDeep`] as documented on them.
pub fn scan(path: &Path) -> Result<Source, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let root = std::fs::canonicalize(path).map_err(io)?;
    let meta = std::fs::metadata(&root).map_err(io)?;
    let name = component(&root, root.file_name().unwrap_or(root.as_os_str()))?;
    if meta.is_file() {
        let path = TorrentPath::new(vec![name.clone()]).map_err(|source| Error::BadName {
            path: root.clone(),
            source,
        })?;
        let files = vec![InputFile {
            path,
            length: meta.len(),
            executable: is_executable(&meta),
        }];
        return Ok(Source {
            root,
            name,
            single_file: true,
            files,
        });
    }
    if !meta.is_dir() {
        return Err(Error::NotRegular { path: root });
    }
    let mut files = Vec::new();
    walk(
        &root,
        &mut Vec::new(),
        &mut vec![(meta.dev(), meta.ino())],
        &mut files,
    )?;
    Ok(Source {
        root,
        name,
        single_file: false,
        files,
    })
}

/// Walks `dir`; `at` is its path inside the torrent, `ancestors` the (device, inode) of every
/// directory from the root down to `dir`, to catch symlink loops.
fn walk(
    dir: &Path,
    at: &mut Vec<PathComponent>,
    ancestors: &mut Vec<(u64, u64)>,
    out: &mut Vec<InputFile>,
) -> Result<(), Error> {
    if at.len() >= MAX_DEPTH {
        return Err(Error::TooDeep {
            path: dir.to_owned(),
        });
    }
    let io = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        at.push(component(&path, &entry.file_name())?);
        if meta.is_dir() {
            let id = (meta.dev(), meta.ino());
            if ancestors.contains(&id) {
                return Err(Error::SymlinkLoop { path });
            }
            ancestors.push(id);
            walk(&path, at, ancestors, out)?;
            ancestors.pop();
        } else if meta.is_file() {
            let torrent_path = TorrentPath::new(at.clone()).map_err(|source| Error::BadName {
                path: path.clone(),
                source,
            })?;
            out.push(InputFile {
                path: torrent_path,
                length: meta.len(),
                executable: is_executable(&meta),
            });
        } else {
            return Err(Error::NotRegular { path });
        }
        at.pop();
    }
    Ok(())
}

fn component(path: &Path, name: &std::ffi::OsStr) -> Result<PathComponent, Error> {
    let bad = |source| Error::BadName {
        path: path.to_owned(),
        source,
    };
    let name = name.to_str().ok_or(PathError::NotUtf8).map_err(bad)?;
    PathComponent::new(name).map_err(bad)
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

/// Creates a torrent from `source`, hashing on `threads` threads (at least one) and calling
/// `progress` with the number of bytes each finished unit covered. `name`, when given,
/// replaces the scanned name.
///
/// # Errors
/// [`Error::Io`] or [`Error::Changed`] if a file cannot be read as scanned, [`Error::Plan`]
/// for inputs the torrent cannot express (empty, bad piece length).
pub fn create(
    source: &Source,
    options: CreateOptions,
    name: Option<PathComponent>,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Torrent, Error> {
    let name = name.unwrap_or_else(|| source.name.clone());
    let mut inputs = source.files.clone();
    if source.single_file {
        // The single file's path is its name inside the torrent.
        if let (Some(input), Ok(path)) = (inputs.first_mut(), TorrentPath::new(vec![name.clone()]))
        {
            input.path = path;
        }
    }
    let disk_paths: std::collections::BTreeMap<TorrentPath, PathBuf> = inputs
        .iter()
        .zip(&source.files)
        .map(|(i, original)| (i.path.clone(), source.disk_path(original)))
        .collect();
    let plan = Plan::new(name, inputs, source.single_file, options)?;
    let paths: Vec<&Path> = plan
        .inputs()
        .iter()
        .map(|i| {
            disk_paths
                .get(&i.path)
                .map(PathBuf::as_path)
                .unwrap_or(Path::new(""))
        })
        .collect();
    let results = hash_units(&plan, &paths, threads.max(1), progress)?;
    Ok(plan.finish(&results)?)
}

/// Hashes every unit of `plan`, units handed out in order from a shared counter so all threads
/// stay busy to the end.
fn hash_units(
    plan: &Plan,
    paths: &[&Path],
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<UnitHash>, Error> {
    let next = AtomicUsize::new(0);
    let units = plan.units();
    let per_thread: Vec<Result<Vec<(usize, UnitHash)>, Error>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(units.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut reader = Reader::new(plan, paths);
                    let mut buffer = vec![0u8; plan.piece_length().get() as usize];
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(unit) = units.get(index) else { break };
                        let data = &mut buffer[..unit.len() as usize];
                        let mut filled = 0;
                        for read in &unit.reads {
                            let end = filled + read.len as usize;
                            if let Err(e) =
                                reader.read(read.file, read.offset, &mut data[filled..end])
                            {
                                // Stop the other threads early: nothing more is worth hashing.
                                next.store(units.len(), Ordering::Relaxed);
                                return Err(e);
                            }
                            filled = end;
                        }
                        done.push((index, unit.hash(index, data)?));
                        progress(unit.len());
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut results: Vec<Option<UnitHash>> = vec![None; units.len()];
    for thread in per_thread {
        for (index, hash) in thread? {
            results[index] = Some(hash);
        }
    }
    // Each unit index is handed out once and every thread succeeded, so all are filled.
    let filled = results.iter().filter(|r| r.is_some()).count();
    results
        .into_iter()
        .collect::<Option<Vec<UnitHash>>>()
        .ok_or(Error::Plan(CreateError::ResultCount {
            expected: units.len(),
            got: filled,
        }))
}

/// Positional reads with the most recently used file kept open.
struct Reader<'p> {
    plan: &'p Plan,
    paths: &'p [&'p Path],
    open: Option<(usize, File)>,
}

impl<'p> Reader<'p> {
    fn new(plan: &'p Plan, paths: &'p [&'p Path]) -> Self {
        Self {
            plan,
            paths,
            open: None,
        }
    }

    fn read(&mut self, file: usize, offset: u64, into: &mut [u8]) -> Result<(), Error> {
        let path = self.paths.get(file).copied().unwrap_or(Path::new(""));
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let handle = match &self.open {
            Some((open, handle)) if *open == file => handle,
            _ => {
                let handle = File::open(path).map_err(io)?;
                let expected = self.plan.inputs().get(file).map(|i| i.length);
                if Some(handle.metadata().map_err(io)?.len()) != expected {
                    return Err(Error::Changed {
                        path: path.to_owned(),
                    });
                }
                &self.open.insert((file, handle)).1
            }
        };
        handle.read_exact_at(into, offset).map_err(|source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::Changed {
                    path: path.to_owned(),
                }
            } else {
                io(source)
            }
        })
    }
}
