//! The close stamp: lets an open skip the full verification of a file that this library closed
//! cleanly and that nothing has written since.
//!
//! Verifying reads the whole file and rebuilds redb's allocator state (~190 ms for 100,000
//! records), which dominated opening. Its purpose is to refuse a file damaged outside crmsync
//! with an error instead of trusting it. When a store closes, a stamp beside the file
//! (`crm.redb` → `crm.redb.closed`) records the file's size, modification and status-change
//! times and inode. The next open verifies unless the file still matches the stamp: any write,
//! truncation, copy over it or replacement changes at least one of them, and the status-change
//! time cannot be set back by ordinary tools. At close the modification time is moved 1 ns past
//! the last write, so even a write within the same timestamp tick changes it (where the file
//! system cannot keep that, no stamp is written). The stamp is removed when the store opens, so
//! only a clean close leaves one. Left undetected: damage below the file system, which a
//! verification at open would not catch later in a session either.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// Writes the stamp of the file when dropped; declared after the database in [`super::Store`],
/// so it runs once the database is closed.
#[derive(Debug)]
pub(super) struct CloseStamp {
    file: PathBuf,
}

fn stamp_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".closed");
    PathBuf::from(name)
}

fn fingerprint(meta: &Metadata) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        format!(
            "crmsync-closed v1 {} {}.{} {}.{} {} {}",
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            meta.ino(),
            meta.dev()
        )
    }
    #[cfg(not(unix))]
    {
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        format!("crmsync-closed v1 {} {modified}", meta.len())
    }
}

/// Whether `file` is unchanged since a clean close stamped it. Removes the stamp either way, so
/// a session that does not close cleanly leaves none.
pub(super) fn take(file: &Path) -> bool {
    let stamp = stamp_path(file);
    let Ok(stored) = std::fs::read_to_string(&stamp) else {
        return false;
    };
    let unchanged = std::fs::metadata(file).is_ok_and(|meta| fingerprint(&meta) == stored);
    if std::fs::remove_file(&stamp).is_err() {
        // A stamp that cannot be removed could outlive an unclean session: do not trust it.
        return false;
    }
    unchanged
}

impl CloseStamp {
    pub(super) fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
        }
    }
}

impl CloseStamp {
    /// Moves the file's modification time 1 ns past the last write, so that a later write in
    /// the same timestamp tick (which stamps the tick's time) still changes it. Returns the
    /// file's metadata then, or `None` where the file system keeps coarser times.
    fn shift_mtime(&self) -> Option<Metadata> {
        let written = std::fs::metadata(&self.file).ok()?.modified().ok()?;
        let shifted = written + std::time::Duration::from_nanos(1);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.file)
            .ok()?;
        file.set_modified(shifted).ok()?;
        drop(file);
        let meta = std::fs::metadata(&self.file).ok()?;
        (meta.modified().ok()? == shifted).then_some(meta)
    }
}

impl Drop for CloseStamp {
    fn drop(&mut self) {
        // Best effort, not flushed: a stamp lost (or never written) only means the next open
        // verifies the file.
        if let Some(meta) = self.shift_mtime() {
            let _ = std::fs::write(stamp_path(&self.file), fingerprint(&meta));
        }
    }
}
