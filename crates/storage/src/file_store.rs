//! The file store: pieces written with positional I/O into their final files, kept in a
//! staging directory until the download is complete, with crash-safe resume data.
//!
//! Crash safety rests on one rule: **the store never trusts data it did not record.** A piece
//! enters the resume file only at a [`PieceStore::flush`], after the data files written since
//! the previous flush were synced; so after `kill -9` or a power cut, a reopened store reports
//! as verified exactly what the last successful flush recorded, and those pieces' bytes are on
//! disk. Everything else may hold anything (torn writes, garbage, zeros): the caller hashes
//! those pieces again before trusting them. A staging file found missing or of the wrong size
//! on open is recreated and the pieces touching it are dropped from the record.
//!
//! [`PieceStore::finish`] moves the files to the destination only when every piece is
//! verified; the resume file says *finishing* while it does, so a crash part way through is
//! completed by opening the store again and calling `finish` once more.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

use shoal_metainfo::{Bitfield, Info, PathComponent};

use crate::error::StorageError;
use crate::layout::{Layout, read_segments};
use crate::resume::{self, Record, ResumeError};
use crate::store::{PieceStore, Verified, lock, read_lock, write_lock};

/// What [`FileStore::open`] made of the resume file. Log it; none of it is an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResumeState {
    /// No resume file (a new download, one that never flushed, or a store seeding in place):
    /// nothing is verified.
    Fresh,
    /// The resume file was read and its pieces are trusted.
    Restored {
        /// The pieces now verified.
        verified: u32,
        /// Staging files that were missing or of the wrong size: recreated, and the pieces
        /// touching them dropped from the record (they download again).
        reset: Vec<PathBuf>,
    },
    /// The resume file was unusable and ignored: nothing is verified.
    Discarded(ResumeError),
}

/// A piece store over real files. See the module documentation.
///
/// Dropping the store does not flush: call [`PieceStore::flush`] to make progress durable.
///
/// `finish` flushes; checks that no destination path is taken (if one is, it fails with
/// [`StorageError::DestinationExists`] and nothing moves); records *finishing*; moves each
/// file with `rename` (across filesystems: copy beside the target, sync, rename, remove the
/// original), making executables executable; syncs the destination directories; and removes
/// the staging directory. Afterwards reads come from the destination. Each target is checked
/// again just before its move, but `rename` itself replaces: a file created in that instant
/// would be overwritten (std has no `RENAME_NOREPLACE`, and this crate has no `unsafe`).
#[derive(Debug)]
pub struct FileStore {
    layout: Layout,
    place: Place,
    /// One per layout file; `None` for padding files.
    handles: RwLock<Vec<Option<Handle>>>,
    state: Mutex<State>,
    /// Held across a whole flush or finish, so resume records are written in order.
    serial: Mutex<()>,
    resume_state: ResumeState,
}

#[derive(Debug)]
enum Place {
    Staging { dir: PathBuf, destination: PathBuf },
    InPlace,
}

#[derive(Debug)]
struct Handle {
    file: File,
    path: PathBuf,
}

#[derive(Debug)]
struct State {
    verified: Verified,
    /// The verified set the resume file holds.
    recorded: Bitfield,
    /// Files written since the last flush, by layout index.
    dirty: Vec<bool>,
    /// The resume file says finishing: moves to the destination may have begun.
    finishing: bool,
    finished: bool,
}

impl State {
    fn new(verified: Verified, recorded: Bitfield, files: usize, finishing: bool) -> Self {
        Self {
            verified,
            recorded,
            dirty: vec![false; files],
            finishing,
            finished: false,
        }
    }
}

impl FileStore {
    /// Opens (or starts) a download of `info` staged in `staging_root/<id>/`, to be moved to
    /// `destination` by [`PieceStore::finish`]. Files live under the staging directory at their
    /// paths relative to the download directory (`<name>/...` for a multi-file torrent), made
    /// sparse at their final length; the resume file is `staging_root/<id>/resume`.
    ///
    /// The verified set is what the last flush recorded ([`FileStore::resume_state`] says
    /// why it is empty when it is). Nothing appears under `destination` before `finish`. A
    /// finished download has no staging directory left, so opening it again starts afresh
    /// (and its `finish` refuses to overwrite what is at the destination).
    ///
    /// # Errors
    /// [`StorageError::BadId`] unless `id` is one safe path component (a hex info-hash is);
    /// the errors of [`Layout::new`]; I/O errors creating the staging files.
    pub fn open(
        info: &Info,
        id: &str,
        staging_root: &Path,
        destination: &Path,
    ) -> Result<Self, StorageError> {
        let layout = Layout::new(info)?;
        PathComponent::new(id).map_err(|source| StorageError::BadId {
            id: id.to_owned(),
            source,
        })?;
        let dir = staging_root.join(id);
        fs::create_dir_all(&dir)
            .map_err(|e| StorageError::io("creating staging directory", &dir, e))?;
        let pieces = layout.piece_count();
        let loaded = resume::load(&dir, pieces);
        let mut record = match &loaded {
            Ok(Some(record)) => record.clone(),
            Ok(None) | Err(_) => empty_record(pieces),
        };

        let mut handles = Vec::with_capacity(layout.files().len());
        let mut reset = Vec::new();
        for (index, slot) in layout.files().iter().enumerate() {
            if slot.pad {
                handles.push(None);
                continue;
            }
            let staged = dir.join(&slot.path);
            let target = destination.join(&slot.path);
            if record.finishing && !exists(&staged)? && size(&target)? == Some(slot.length) {
                // `finish` moved it before a crash stopped it.
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&target)
                    .map_err(|e| StorageError::io("opening", &target, e))?;
                handles.push(Some(Handle { file, path: target }));
                continue;
            }
            let (handle, intact) = create_staged(staged, slot.length)?;
            if !intact {
                reset.push(index);
            }
            handles.push(Some(handle));
        }

        let resume_state = match loaded {
            Ok(Some(_)) => {
                if !reset.is_empty() {
                    for &index in &reset {
                        for piece in layout.pieces_of(index) {
                            record.verified.remove(piece);
                        }
                    }
                    record.finishing = false;
                    // Record the loss now: the recreated files are the right size, so a crash
                    // before the next flush must not let the old record vouch for their zeros.
                    resume::store(&dir, &record)?;
                }
                ResumeState::Restored {
                    verified: record.verified.count(),
                    reset: reset
                        .iter()
                        .map(|&i| dir.join(&layout.files()[i].path))
                        .collect(),
                }
            }
            Ok(None) => ResumeState::Fresh,
            Err(e) => ResumeState::Discarded(e),
        };

        let mut verified = Verified::new(pieces);
        verified.set = record.verified.clone();
        verified.sealed = record.finishing;
        let state = State::new(verified, record.verified, handles.len(), record.finishing);
        Ok(Self {
            layout,
            place: Place::Staging {
                dir,
                destination: destination.to_owned(),
            },
            handles: RwLock::new(handles),
            state: Mutex::new(state),
            serial: Mutex::new(()),
            resume_state,
        })
    }

    /// A read-only store over complete data already on disk, to seed it where it is:
    /// `data_path` is the file of a single-file torrent, or the directory holding a multi-file
    /// torrent's files (the torrent's own directory, not its parent). Nothing is verified
    /// until the caller hash-checks pieces and calls [`PieceStore::mark_verified`]; nothing is
    /// recorded on disk. Writes are refused with [`StorageError::ReadOnly`]; `finish` only
    /// checks that every piece is verified.
    ///
    /// # Errors
    /// The errors of [`Layout::new`]; [`StorageError::Io`] for a file that is missing or not a
    /// regular file; [`StorageError::WrongSize`] for one whose size differs from the torrent's.
    pub fn seed_in_place(info: &Info, data_path: &Path) -> Result<Self, StorageError> {
        let layout = Layout::new(info)?;
        let mut handles = Vec::with_capacity(layout.files().len());
        for slot in layout.files() {
            if slot.pad {
                handles.push(None);
                continue;
            }
            let path = if info.single_file {
                data_path.to_owned()
            } else {
                // Drop the leading torrent name: `data_path` is that directory.
                data_path.join(slot.path.iter().skip(1).collect::<PathBuf>())
            };
            let action = "opening data to seed";
            let file = File::open(&path).map_err(|e| StorageError::io(action, &path, e))?;
            let meta = file
                .metadata()
                .map_err(|e| StorageError::io(action, &path, e))?;
            if !meta.is_file() {
                let e = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
                return Err(StorageError::io(action, &path, e));
            }
            if meta.len() != slot.length {
                return Err(StorageError::WrongSize {
                    path,
                    expected: slot.length,
                    found: meta.len(),
                });
            }
            handles.push(Some(Handle { file, path }));
        }
        let pieces = layout.piece_count();
        let mut verified = Verified::new(pieces);
        verified.read_only = true;
        let state = State::new(verified, Bitfield::new(pieces), handles.len(), false);
        Ok(Self {
            layout,
            place: Place::InPlace,
            handles: RwLock::new(handles),
            state: Mutex::new(state),
            serial: Mutex::new(()),
            resume_state: ResumeState::Fresh,
        })
    }

    /// Like [`FileStore::seed_in_place`], but every piece counts as verified without a hash
    /// check. Only for data this process verified itself and recorded as complete (the agent
    /// keeps such a record with each file's size and modification time, and checks it before
    /// calling this); anything else must be hash-checked.
    ///
    /// # Errors
    /// The errors of [`FileStore::seed_in_place`].
    pub fn seed_verified(info: &Info, data_path: &Path) -> Result<Self, StorageError> {
        let store = Self::seed_in_place(info, data_path)?;
        lock(&store.state).verified.set = Bitfield::full(store.layout.piece_count());
        Ok(store)
    }

    /// The layout the store follows.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// What opening made of the resume file.
    pub fn resume_state(&self) -> &ResumeState {
        &self.resume_state
    }

    /// The staging directory, `staging_root/<id>` (`None` when seeding in place). It is
    /// removed by a successful `finish`.
    pub fn staging_dir(&self) -> Option<&Path> {
        match &self.place {
            Place::Staging { dir, .. } => Some(dir),
            Place::InPlace => None,
        }
    }

    /// Syncs the dirty files, then records the verified set if it changed. `_serial` proves
    /// the caller holds the serial lock.
    fn flush_serial(&self, _serial: &MutexGuard<'_, ()>, dir: &Path) -> Result<(), StorageError> {
        // The snapshot is taken before syncing: a piece in it was marked after its writes
        // returned, which set its files dirty, so the sync below covers its bytes.
        let (snapshot, finishing, dirty) = {
            let mut state = lock(&self.state);
            if state.finished {
                return Ok(());
            }
            let dirty: Vec<usize> = (0..state.dirty.len()).filter(|&i| state.dirty[i]).collect();
            state.dirty.fill(false);
            (state.verified.set.clone(), state.finishing, dirty)
        };
        let synced = {
            let handles = read_lock(&self.handles);
            dirty.iter().try_for_each(|&i| match &handles[i] {
                Some(h) => h
                    .file
                    .sync_data()
                    .map_err(|e| StorageError::io("syncing", &h.path, e)),
                None => Ok(()),
            })
        };
        if let Err(e) = synced {
            let mut state = lock(&self.state);
            for i in dirty {
                state.dirty[i] = true;
            }
            return Err(e);
        }
        if lock(&self.state).recorded == snapshot {
            return Ok(());
        }
        resume::store(
            dir,
            &Record {
                verified: snapshot.clone(),
                finishing,
            },
        )?;
        lock(&self.state).recorded = snapshot;
        Ok(())
    }

    /// Moves every file still in staging to `destination`, then removes the staging directory.
    fn move_to_destination(&self, dir: &Path, destination: &Path) -> Result<(), StorageError> {
        let mut handles = write_lock(&self.handles);
        let mut dirs = BTreeSet::new();
        for (slot, handle) in self.layout.files().iter().zip(handles.iter_mut()) {
            let Some(handle) = handle else { continue };
            let target = destination.join(&slot.path);
            if handle.path == target {
                continue;
            }
            if exists(&target)? {
                return Err(StorageError::DestinationExists { path: target });
            }
            if slot.executable {
                set_executable(handle)?;
            }
            move_file(&handle.path, &target)?;
            handle.path = target;
            // Reopen read-only where it now lives (after a copy, the old descriptor holds the
            // deleted staging copy). Should that fail, the old descriptor still reads right.
            handle.file = File::open(&handle.path)
                .map_err(|e| StorageError::io("opening", &handle.path, e))?;
            let mut parent = handle.path.parent();
            while let Some(p) = parent.filter(|p| p.starts_with(destination)) {
                dirs.insert(p.to_owned());
                parent = p.parent();
            }
        }
        // The renames are durable before the staging record of them goes away.
        for d in &dirs {
            resume::sync_dir(d)?;
        }
        fs::remove_dir_all(dir).map_err(|e| StorageError::io("removing staging directory", dir, e))
    }
}

impl PieceStore for FileStore {
    fn write(&self, piece: u32, offset: u32, data: &[u8]) -> Result<(), StorageError> {
        let segments = self.layout.segments(piece, offset, data.len())?;
        lock(&self.state).verified.check_writable(piece)?;
        let mut touched = Vec::with_capacity(segments.len());
        let written = {
            let handles = read_lock(&self.handles);
            segments.iter().try_for_each(|seg| {
                let Some(h) = &handles[seg.file] else {
                    return Ok(());
                };
                touched.push(seg.file);
                h.file
                    .write_all_at(&data[seg.at..seg.at + seg.len], seg.file_offset)
                    .map_err(|e| StorageError::io("writing", &h.path, e))
            })
        };
        let mut state = lock(&self.state);
        for file in touched {
            state.dirty[file] = true;
        }
        written
    }

    fn read(&self, piece: u32, offset: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let segments = self.layout.segments(piece, offset, buf.len())?;
        let handles = read_lock(&self.handles);
        read_segments(buf, &segments, |seg, out| match &handles[seg.file] {
            Some(h) => h
                .file
                .read_exact_at(out, seg.file_offset)
                .map_err(|e| StorageError::io("reading", &h.path, e)),
            // Segments only name data files, which always have a handle.
            None => {
                out.fill(0);
                Ok(())
            }
        })
    }

    fn mark_verified(&self, piece: u32) -> Result<(), StorageError> {
        self.layout.piece_span(piece)?;
        lock(&self.state).verified.set.insert(piece);
        Ok(())
    }

    fn mark_unverified(&self, piece: u32) -> Result<(), StorageError> {
        self.layout.piece_span(piece)?;
        let was_recorded = {
            let mut state = lock(&self.state);
            state.verified.unmark(piece)? && state.recorded.contains(piece)
        };
        if !was_recorded {
            return Ok(());
        }
        let flushed = self.flush();
        if flushed.is_err() {
            // The record still vouches for the piece, so its data must stay untouched.
            lock(&self.state).verified.set.insert(piece);
        }
        flushed
    }

    fn verified(&self) -> Bitfield {
        lock(&self.state).verified.set.clone()
    }

    fn flush(&self) -> Result<(), StorageError> {
        let Place::Staging { dir, .. } = &self.place else {
            return Ok(());
        };
        let serial = lock(&self.serial);
        self.flush_serial(&serial, dir)
    }

    fn finish(&self) -> Result<(), StorageError> {
        let Place::Staging { dir, destination } = &self.place else {
            // Seeding in place: the data already is where it is served from.
            let mut state = lock(&self.state);
            state.verified.check_complete()?;
            state.verified.sealed = true;
            state.finished = true;
            return Ok(());
        };
        let serial = lock(&self.serial);
        let finishing = {
            let state = lock(&self.state);
            if state.finished {
                return Ok(());
            }
            state.verified.check_complete()?;
            state.finishing
        };
        if !finishing {
            self.flush_serial(&serial, dir)?;
            // Refuse before anything moves, so a conflict leaves the download whole in staging.
            {
                let handles = read_lock(&self.handles);
                for (slot, handle) in self.layout.files().iter().zip(handles.iter()) {
                    let target = destination.join(&slot.path);
                    if handle.as_ref().is_some_and(|h| h.path != target) && exists(&target)? {
                        return Err(StorageError::DestinationExists { path: target });
                    }
                }
            }
            let full = {
                let mut state = lock(&self.state);
                state.verified.sealed = true;
                state.finishing = true;
                state.verified.set.clone()
            };
            let record = Record {
                verified: full.clone(),
                finishing: true,
            };
            if let Err(e) = resume::store(dir, &record) {
                let mut state = lock(&self.state);
                state.verified.sealed = false;
                state.finishing = false;
                return Err(e);
            }
            lock(&self.state).recorded = full;
        }
        self.move_to_destination(dir, destination)?;
        lock(&self.state).finished = true;
        Ok(())
    }
}

fn empty_record(pieces: u32) -> Record {
    Record {
        verified: Bitfield::new(pieces),
        finishing: false,
    }
}

/// Returns true if and only if something (a file, directory or link) is at `path`.
fn exists(path: &Path) -> Result<bool, StorageError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("checking", path, e)),
    }
}

/// The size of the regular file at `path`, `None` if there is none.
fn size(path: &Path) -> Result<Option<u64>, StorageError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("checking", path, e)),
    }
}

/// Opens or creates a staging file at `len` bytes (sparse); returns it and whether it already
/// had that length.
fn create_staged(path: PathBuf, len: u64) -> Result<(Handle, bool), StorageError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| StorageError::io("creating staging directory", parent, e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io("creating", &path, e))?;
    let found = file
        .metadata()
        .map_err(|e| StorageError::io("checking", &path, e))?
        .len();
    if found != len {
        file.set_len(len)
            .map_err(|e| StorageError::io("sizing", &path, e))?;
    }
    Ok((Handle { file, path }, found == len))
}

/// Gives execute permission wherever the file has read permission (BEP 47 attribute `x`).
fn set_executable(handle: &Handle) -> Result<(), StorageError> {
    let action = "making executable";
    let mut perms = handle
        .file
        .metadata()
        .map_err(|e| StorageError::io(action, &handle.path, e))?
        .permissions();
    perms.set_mode(perms.mode() | (perms.mode() & 0o444) >> 2);
    handle
        .file
        .set_permissions(perms)
        .map_err(|e| StorageError::io(action, &handle.path, e))
}

/// Moves `from` to `to` (which must not exist), creating `to`'s parents; across filesystems
/// it copies instead (see [`copy_across`]).
fn move_file(from: &Path, to: &Path) -> Result<(), StorageError> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| StorageError::io("creating", parent, e))?;
    }
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_across(from, to),
        Err(e) => Err(StorageError::io("moving into place", to, e)),
    }
}

/// Copies `from` to a new file beside `to`, syncs it, renames it to `to` and removes `from`,
/// so `to` appears whole or not at all.
fn copy_across(from: &Path, to: &Path) -> Result<(), StorageError> {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".shoal-partial");
    let partial = to.with_file_name(name);
    let copied = (|| {
        let mut source = File::open(from).map_err(|e| StorageError::io("reading", from, e))?;
        let mut out = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
        {
            Ok(out) => out,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StorageError::DestinationExists {
                    path: partial.clone(),
                });
            }
            Err(e) => return Err(StorageError::io("creating", &partial, e)),
        };
        let perms = source
            .metadata()
            .map_err(|e| StorageError::io("reading", from, e))?
            .permissions();
        io::copy(&mut source, &mut out)
            .and_then(|_| out.set_permissions(perms))
            .and_then(|()| out.sync_all())
            .map_err(|e| StorageError::io("copying to", &partial, e))
    })();
    if let Err(e) = copied {
        if !matches!(e, StorageError::DestinationExists { .. }) {
            // Best effort: a partial copy is useless; the original is still in staging.
            let _ = fs::remove_file(&partial);
        }
        return Err(e);
    }
    fs::rename(&partial, to).map_err(|e| StorageError::io("moving into place", to, e))?;
    fs::remove_file(from).map_err(|e| StorageError::io("removing", from, e))
}
