//! The agent's data directory:
//!
//! ```text
//! <data_dir>/torrents/<content id>.torrent   the torrent of every artifact held
//! <data_dir>/torrents/<content id>.name      its name:tag, when known
//! <data_dir>/staging/<content id>/           downloads in progress (with their resume file)
//! <data_dir>/store/<content id>/<name>       verified, complete artifacts
//! <data_dir>/store/<content id>.complete     each file's size and mtime, written after the
//!                                            data was verified and synced
//! <data_dir>/catalog/                        the embedded control plane's catalog
//! ```
//!
//! A `.complete` record whose sizes and mtimes still match lets a restart seed without
//! hashing again; anything else is checked or downloaded again.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use shoal_metainfo::{Info, Torrent};

/// A recorded torrent: content id, the `.torrent` bytes, the name it was retrieved by.
pub type Saved = (String, Vec<u8>, Option<String>);

/// Paths inside the data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the directory layout under `root`.
    ///
    /// # Errors
    /// When a directory cannot be created.
    pub fn create(root: &Path) -> std::io::Result<Self> {
        for sub in ["torrents", "staging", "store", "catalog"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the embedded catalog lives.
    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog")
    }

    /// The staging root of downloads.
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// The directory a complete artifact's data lives in.
    pub fn store_dir(&self, id: &str) -> PathBuf {
        self.root.join("store").join(id)
    }

    /// The artifact's data: the file of a single-file torrent, the directory of a multi-file
    /// one.
    pub fn data_path(&self, id: &str, info: &Info) -> PathBuf {
        self.store_dir(id).join(info.name.as_str())
    }

    fn complete_marker(&self, id: &str) -> PathBuf {
        self.root.join("store").join(format!("{id}.complete"))
    }

    fn torrent_path(&self, id: &str) -> PathBuf {
        self.root.join("torrents").join(format!("{id}.torrent"))
    }

    fn name_path(&self, id: &str) -> PathBuf {
        self.root.join("torrents").join(format!("{id}.name"))
    }

    fn used_path(&self, id: &str) -> PathBuf {
        self.root.join("torrents").join(format!("{id}.used"))
    }

    fn placed_path(&self, id: &str) -> PathBuf {
        self.root.join("torrents").join(format!("{id}.placed"))
    }

    /// Records that a placement assigned `id` to this node (seed retention applies to it
    /// once none does).
    ///
    /// # Errors
    /// When the record cannot be written.
    pub fn mark_placed(&self, id: &str) -> std::io::Result<()> {
        write_atomically(&self.placed_path(id), b"")
    }

    /// Returns true if and only if a placement assigned `id` to this node.
    pub fn was_placed(&self, id: &str) -> bool {
        self.placed_path(id).exists()
    }

    fn action_path(&self, id: &str) -> PathBuf {
        self.root.join("torrents").join(format!("{id}.action"))
    }

    /// Records that the post-completion action is due for `id` (written before its
    /// completion record, so a crash between the two still runs it once the data checks).
    ///
    /// # Errors
    /// When the record cannot be written.
    pub fn mark_action_due(&self, id: &str) -> std::io::Result<()> {
        write_atomically(&self.action_path(id), b"")
    }

    /// Returns true if and only if the post-completion action is due for `id`.
    pub fn action_due(&self, id: &str) -> bool {
        self.action_path(id).exists()
    }

    /// Records that the post-completion action ran for `id` (nothing to do if `id` was
    /// removed meanwhile: its record went with it).
    ///
    /// # Errors
    /// When the record cannot be removed.
    pub fn action_done(&self, id: &str) -> std::io::Result<()> {
        match fs::remove_file(self.action_path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Records that `id` was used at `now_ms` (Unix milliseconds): started, assigned or
    /// retrieved. Eviction under a quota takes the least recently used first.
    ///
    /// # Errors
    /// When the record cannot be written.
    pub fn touch(&self, id: &str, now_ms: u64) -> std::io::Result<()> {
        write_atomically(&self.used_path(id), now_ms.to_string().as_bytes())
    }

    /// When `id` was last used (Unix milliseconds): its use record, else when its torrent was
    /// recorded, else 0.
    pub fn last_used(&self, id: &str) -> u64 {
        if let Some(ms) = fs::read_to_string(self.used_path(id))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return ms;
        }
        fs::metadata(self.torrent_path(id))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Records a torrent (and its name) so a restart resumes it.
    ///
    /// # Errors
    /// When the files cannot be written.
    pub fn save_torrent(
        &self,
        id: &str,
        torrent: &Torrent,
        name_tag: Option<&str>,
    ) -> std::io::Result<()> {
        write_atomically(&self.torrent_path(id), &torrent.to_bytes())?;
        if let Some(name) = name_tag {
            write_atomically(&self.name_path(id), name.as_bytes())?;
        }
        Ok(())
    }

    /// Every recorded torrent: (content id, torrent file bytes, name).
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn saved_torrents(&self) -> std::io::Result<Vec<Saved>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join("torrents"))? {
            let path = entry?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".torrent"))
            else {
                continue;
            };
            let bytes = fs::read(&path)?;
            let name = fs::read_to_string(self.name_path(id)).ok();
            out.push((id.to_owned(), bytes, name));
        }
        out.sort();
        Ok(out)
    }

    /// Writes the record that `id`'s data is complete and verified, after syncing the data.
    ///
    /// # Errors
    /// When the data cannot be read or the record written.
    pub fn mark_complete(&self, id: &str, info: &Info) -> std::io::Result<()> {
        let mut record = String::new();
        for (path, size, mtime) in self.file_stamps(id, info)? {
            fs::File::open(&path)?.sync_all()?;
            record.push_str(&format!("{size} {mtime} {}\n", path.display()));
        }
        write_atomically(&self.complete_marker(id), record.as_bytes())
    }

    /// True when `id` has a complete record that still matches its files.
    pub fn is_complete(&self, id: &str, info: &Info) -> bool {
        let Ok(record) = fs::read_to_string(self.complete_marker(id)) else {
            return false;
        };
        let Ok(stamps) = self.file_stamps(id, info) else {
            return false;
        };
        let now: String = stamps
            .iter()
            .map(|(path, size, mtime)| format!("{size} {mtime} {}\n", path.display()))
            .collect();
        now == record
    }

    /// True when the data directory of `id` exists (complete or not).
    pub fn has_data(&self, id: &str, info: &Info) -> bool {
        self.data_path(id, info).exists()
    }

    /// Deletes everything held for `id`; returns the bytes of data freed.
    pub fn remove(&self, id: &str, info: &Info) -> u64 {
        let freed = self
            .file_stamps(id, info)
            .map(|s| s.iter().map(|(_, size, _)| size).sum())
            .unwrap_or(0);
        let _ = fs::remove_file(self.complete_marker(id));
        let _ = fs::remove_dir_all(self.store_dir(id));
        let _ = fs::remove_dir_all(self.staging().join(id));
        let _ = fs::remove_file(self.torrent_path(id));
        let _ = fs::remove_file(self.name_path(id));
        let _ = fs::remove_file(self.used_path(id));
        let _ = fs::remove_file(self.action_path(id));
        let _ = fs::remove_file(self.placed_path(id));
        freed
    }

    /// Bytes of complete artifacts and downloads on disk (apparent sizes).
    pub fn used_bytes(&self) -> u64 {
        fn walk(path: &Path) -> u64 {
            let Ok(meta) = fs::symlink_metadata(path) else {
                return 0;
            };
            if meta.is_dir() {
                fs::read_dir(path)
                    .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                    .unwrap_or(0)
            } else {
                meta.len()
            }
        }
        walk(&self.root.join("store")) + walk(&self.staging())
    }

    /// (path, size, mtime in ns) of every data file of `id`, in torrent order.
    fn file_stamps(&self, id: &str, info: &Info) -> std::io::Result<Vec<(PathBuf, u64, u128)>> {
        let base = self.data_path(id, info);
        let mut out = Vec::new();
        for file in info.data_files() {
            let path = if info.single_file {
                base.clone()
            } else {
                base.join(file.path.to_path_buf())
            };
            let meta = fs::metadata(&path)?;
            let mtime = meta
                .modified()?
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            out.push((path, meta.len(), mtime));
        }
        Ok(out)
    }
}

/// Copies a file or directory tree from `from` to `to` (which must not exist), through a
/// temporary sibling renamed into place, so `to` appears whole or not at all.
///
/// # Errors
/// When reading, writing or renaming fails (the temporary copy is removed).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let parent = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = parent.join(format!(".{name}.shoal-partial"));
    let _ = fs::remove_dir_all(&temp);
    let _ = fs::remove_file(&temp);
    let result = copy_into(from, &temp).and_then(|()| fs::rename(&temp, to));
    if result.is_err() {
        let _ = fs::remove_dir_all(&temp);
        let _ = fs::remove_file(&temp);
    }
    result
}

fn copy_into(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_into(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        fs::copy(from, to)?;
        fs::File::open(to)?.sync_all()
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is neither a file nor a directory", from.display()),
        ))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("partial");
    let mut file = fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)
}
