//! The file operations whose durability ContextDB depends on, behind one seam.
//!
//! On a local disk a write first lands in the OS page cache. Only `fsync` makes it survive a
//! power failure: of the file for its bytes and size, of its directory for its name (a new file,
//! a rename, a new subdirectory). Code that must be durable goes through [`Fs`], so that a test
//! can swap in [`crate::fault::FaultFs`], which forgets at a simulated power failure whatever a
//! real disk may forget, and check that nothing acknowledged depended on it.
//!
//! The operations are path based: opening a file per call costs microseconds against the
//! milliseconds of the `fsync` that follows every durable write.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Proof that an [`Fs::try_lock`] lock is held; dropping it releases the lock.
pub type FsLock = Box<dyn std::any::Any + Send + Sync>;

/// File operations with explicit durability: nothing is durable until synced.
pub trait Fs: Send + Sync + fmt::Debug {
    /// The whole content of the file at `path`; `NotFound` when there is none.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// Creates the directory `path` and its missing parents (not durably: see
    /// [`create_dir_all_durable`]).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Creates or truncates the file at `path` and writes `bytes` into it.
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;

    /// Appends `bytes` to the file at `path`, creating it when missing.
    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;

    /// Cuts (or zero-extends) the file at `path` to `len_bytes`.
    fn set_len(&self, path: &Path, len_bytes: u64) -> io::Result<()>;

    /// Makes the content and size of the file at `path` durable (`fdatasync`).
    fn sync_file(&self, path: &Path) -> io::Result<()>;

    /// Renames `source` to `target`, replacing `target` if it exists.
    fn rename(&self, source: &Path, target: &Path) -> io::Result<()>;

    /// Makes the entries of the directory `path` durable: files created, renamed or removed in
    /// it, and subdirectories created in it.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Takes the exclusive lock named by `path` (creating the lock file if needed); `None` when
    /// someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<FsLock>>;
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl Fs for RealFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.write_all(bytes)
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(bytes)
    }

    fn set_len(&self, path: &Path, len_bytes: u64) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(len_bytes)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        // fsync flushes the inode whichever descriptor asks; write access keeps it portable.
        OpenOptions::new().write(true).open(path)?.sync_data()
    }

    fn rename(&self, source: &Path, target: &Path) -> io::Result<()> {
        fs::rename(source, target)
    }

    #[cfg(unix)]
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    #[cfg(not(unix))]
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // Windows cannot open a directory as a file; its metadata journal orders renames.
        let _ = path;
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<FsLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Creates the directory `path` and its missing parents, and makes each new directory's entry
/// in its parent durable, so that files synced into `path` later are reachable after a crash.
pub fn create_dir_all_durable(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cursor = Some(path);
    while let Some(dir) = cursor {
        if fs.exists(dir)? {
            break;
        }
        missing.push(dir.to_path_buf());
        cursor = dir.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(path)?;
    // Top down: each parent gained one entry, the new directory below it.
    for dir in missing.iter().rev() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Suffix of the temporary file [`write_file_atomic`] writes before renaming it into place.
pub const TMP_SUFFIX: &str = ".tmp";

/// Replaces `dir/name` with `bytes`, atomically and durably: write a temporary file, sync it,
/// rename it over the old one, sync the directory. A crash leaves the old or the new version.
pub fn write_file_atomic(fs: &dyn Fs, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp_path = dir.join(format!("{name}{TMP_SUFFIX}"));
    fs.write(&tmp_path, bytes)?;
    fs.sync_file(&tmp_path)?;
    fs.rename(&tmp_path, &dir.join(name))?;
    fs.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_fs_round_trip() {
        let temp = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let dir = temp.path().join("a/b");
        create_dir_all_durable(&fs, &dir).unwrap();
        assert!(fs.exists(&dir).unwrap());
        let file = dir.join("f");
        fs.append(&file, b"hello").unwrap();
        fs.append(&file, b" world").unwrap();
        fs.sync_file(&file).unwrap();
        assert_eq!(fs.read(&file).unwrap(), b"hello world");
        fs.set_len(&file, 5).unwrap();
        assert_eq!(fs.read(&file).unwrap(), b"hello");
        write_file_atomic(&fs, &dir, "g", b"one").unwrap();
        write_file_atomic(&fs, &dir, "g", b"two").unwrap();
        assert_eq!(fs.read(&dir.join("g")).unwrap(), b"two");
        assert!(!fs.exists(&dir.join("g.tmp")).unwrap());

        let lock = fs.try_lock(&dir.join("LOCK")).unwrap();
        assert!(lock.is_some());
        assert!(fs.try_lock(&dir.join("LOCK")).unwrap().is_none());
        drop(lock);
        assert!(fs.try_lock(&dir.join("LOCK")).unwrap().is_some());
    }
}
