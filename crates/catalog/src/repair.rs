//! Operator repair of a raft log that recovery refuses to open.
//!
//! Recovery truncates a torn tail by itself but refuses damage in the middle of the log
//! ([`CatalogError::DamagedLog`]): the entries after it may have been acknowledged. Cutting the
//! log there is then an operator's decision, made with [`repair_log`] (the CLI's
//! `contextdb repair-log --data-dir <DATA_DIR>`), which first copies the whole file aside.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use contextdb_storage::fs::{Fs, RealFs};

use crate::catalog::LOCK_FILE;
use crate::error::CatalogError;
use crate::log_store::{LOG_FILE, PURGED_FILE, read_json_file, scan_segment};
use crate::types::LogId;

/// Backup names tried before giving up (`log.damaged-<offset>`, then `-1`, `-2`, ...).
const BACKUP_NAMES_MAX: u32 = 1000;

/// The command that repairs the log of `raft_dir`, for error messages. The data directory is
/// the raft directory's parent, as the database lays them out.
pub fn repair_command(raft_dir: &Path) -> String {
    let data_dir = raft_dir
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(raft_dir);
    format!(
        "contextdb repair-log --data-dir {}",
        shell_quote(&data_dir.display().to_string())
    )
}

/// Quotes `text` for a POSIX shell when it holds anything but plain path characters.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// What [`repair_log`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRepair {
    /// The log file examined.
    pub log_path: PathBuf,
    /// The copy of the whole log made before cutting it; `None` when nothing was cut.
    pub backup_path: Option<PathBuf>,
    /// The offset of the first invalid record, where the log now ends; `None` when the log
    /// had no invalid record (nothing to do).
    pub cut_at: Option<u64>,
    /// Bytes removed from the log.
    pub bytes_dropped: u64,
    /// Live entries kept before the cut.
    pub entries_kept: u64,
    /// Valid entries after the damage that the cut removed (0 for a torn tail).
    pub entries_dropped: u64,
}

impl fmt::Display for LogRepair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.log_path.display();
        match (self.cut_at, &self.backup_path) {
            (Some(offset), Some(backup)) => write!(
                f,
                "raft log {log}: cut at byte {offset}, dropping {} bytes and {} valid entries \
                 after the damage; {} entries kept; the original file is saved as {}",
                self.bytes_dropped,
                self.entries_dropped,
                self.entries_kept,
                backup.display()
            ),
            _ => write!(
                f,
                "raft log {log}: no damage found, nothing changed ({} entries)",
                self.entries_kept
            ),
        }
    }
}

/// Cuts the raft log in `raft_dir` at its first invalid record, after copying the whole file
/// to `log.damaged-<offset>` next to it. A log without damage is left alone.
///
/// Refuses to run while a catalog has the directory open ([`CatalogError::Locked`]). The cut
/// drops every entry after the damage: the report says how many.
pub fn repair_log(raft_dir: &Path) -> Result<LogRepair, CatalogError> {
    repair_log_with_fs(&RealFs, raft_dir)
}

/// [`repair_log`] on a given file system.
pub(crate) fn repair_log_with_fs(fs: &dyn Fs, raft_dir: &Path) -> Result<LogRepair, CatalogError> {
    let storage_error = |source| CatalogError::Storage {
        path: raft_dir.to_path_buf(),
        source,
    };
    let _lock = fs
        .try_lock(&raft_dir.join(LOCK_FILE))
        .map_err(storage_error)?
        .ok_or_else(|| CatalogError::Locked {
            path: raft_dir.to_path_buf(),
        })?;
    let log_path = raft_dir.join(LOG_FILE);
    let bytes = match fs.read(&log_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(storage_error(e)),
    };
    let last_purged =
        read_json_file::<LogId>(fs, &raft_dir.join(PURGED_FILE)).map_err(storage_error)?;
    let scan = scan_segment(&bytes, last_purged.as_ref()).map_err(storage_error)?;
    let mut report = LogRepair {
        log_path: log_path.clone(),
        backup_path: None,
        cut_at: None,
        bytes_dropped: 0,
        entries_kept: scan.entry_count(),
        entries_dropped: 0,
    };
    let Some(damage) = scan.damage else {
        return Ok(report);
    };
    assert_eq!(
        damage.offset, scan.valid_len,
        "damage starts where valid bytes end"
    );
    let backup_path = free_backup_path(fs, raft_dir, damage.offset).map_err(storage_error)?;
    fs.write(&backup_path, &bytes).map_err(storage_error)?;
    fs.sync_file(&backup_path).map_err(storage_error)?;
    fs.sync_dir(raft_dir).map_err(storage_error)?;
    fs.set_len(&log_path, damage.offset)
        .map_err(storage_error)?;
    fs.sync_file(&log_path).map_err(storage_error)?;
    tracing::warn!(
        log = %log_path.display(),
        backup = %backup_path.display(),
        offset = damage.offset,
        reason = %damage.reason,
        "raft log cut at its first invalid record"
    );
    report.backup_path = Some(backup_path);
    report.cut_at = Some(damage.offset);
    report.bytes_dropped = bytes.len() as u64 - damage.offset;
    report.entries_dropped = damage.resumes.map_or(0, |resumes| resumes.records);
    Ok(report)
}

/// `log.damaged-<offset>`, or with a counter when an earlier repair used that name.
fn free_backup_path(fs: &dyn Fs, raft_dir: &Path, offset: u64) -> io::Result<PathBuf> {
    let base = format!("{LOG_FILE}.damaged-{offset}");
    for attempt in 0..BACKUP_NAMES_MAX {
        let name = match attempt {
            0 => base.clone(),
            n => format!("{base}-{n}"),
        };
        let path = raft_dir.join(name);
        if !fs.exists(&path)? {
            return Ok(path);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{BACKUP_NAMES_MAX} backups named {base} already exist"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_command_names_the_data_dir_and_quotes_when_needed() {
        assert_eq!(
            repair_command(Path::new("/var/lib/contextdb/raft")),
            "contextdb repair-log --data-dir /var/lib/contextdb"
        );
        assert_eq!(
            repair_command(Path::new("/tmp/my data/raft")),
            "contextdb repair-log --data-dir '/tmp/my data'"
        );
    }
}
