//! Which local files statements may read and write.
//!
//! `COPY ... FROM` and `COPY ... TO` name files on the machine the database runs on. A
//! server must not let a statement read `/etc/shadow` or overwrite its own data files, so
//! statements reach files only under configured directories (`DbConfig::file_roots`). The
//! check is on the canonical path, so `..` and symbolic links cannot lead outside.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// What a statement does with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The canonical form of `path` when it lies under one of `roots`; otherwise a plan error
/// that names the roots.
pub fn check(roots: &[PathBuf], path: &Path, access: Access) -> Result<PathBuf> {
    let canonical = match access {
        Access::Read => std::fs::canonicalize(path)
            .map_err(|e| Error::execution(format!("cannot read `{}`: {e}", path.display())))?,
        Access::Write => canonical_for_write(path)?,
    };
    let allowed = roots
        .iter()
        .any(|root| std::fs::canonicalize(root).is_ok_and(|root| canonical.starts_with(&root)));
    if allowed {
        return Ok(canonical);
    }
    let listed = if roots.is_empty() {
        "none are configured".to_string()
    } else {
        roots
            .iter()
            .map(|r| format!("`{}`", r.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Error::plan(format!(
        "COPY may {} files only under the file roots ({listed}); `{}` is outside them \
         (the shell's --file-root adds a root)",
        match access {
            Access::Read => "read",
            Access::Write => "write",
        },
        path.display()
    )))
}

/// A path that may not exist yet: its nearest existing ancestor, canonical, joined with the
/// rest, which must hold no `..`.
fn canonical_for_write(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::execution(format!("no current directory: {e}")))?
            .join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            break;
        };
        rest.push(name.to_owned());
        existing = parent;
    }
    let mut canonical = std::fs::canonicalize(existing)
        .map_err(|e| Error::execution(format!("cannot write `{}`: {e}", path.display())))?;
    for name in rest.iter().rev() {
        if Path::new(name)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            return Err(Error::plan(format!(
                "`{}`: `..` in a path that does not exist yet",
                path.display()
            )));
        }
        canonical.push(name);
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_a_root_pass() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let inside_file = root.path().join("a.csv");
        std::fs::write(&inside_file, "x\n").unwrap();
        let outside_file = outside.path().join("b.csv");
        std::fs::write(&outside_file, "x\n").unwrap();
        let roots = vec![root.path().to_path_buf()];

        assert!(check(&roots, &inside_file, Access::Read).is_ok());
        let e = check(&roots, &outside_file, Access::Read).unwrap_err();
        assert!(e.message.contains("outside"), "{e}");
        // `..` cannot climb out.
        let climbing = root
            .path()
            .join("..")
            .join(outside.path().file_name().unwrap());
        assert!(check(&roots, &climbing.join("b.csv"), Access::Read).is_err());
        // A file to be written may not exist yet, in a directory that does not either.
        assert!(check(&roots, &root.path().join("new/out.parquet"), Access::Write).is_ok());
        assert!(check(&roots, &outside.path().join("out.parquet"), Access::Write).is_err());
        // No roots: nothing passes.
        assert!(check(&[], &inside_file, Access::Read).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_cannot_lead_outside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        let roots = vec![root.path().to_path_buf()];
        assert!(check(&roots, &root.path().join("link/secret"), Access::Read).is_err());
        assert!(check(&roots, &root.path().join("link/new"), Access::Write).is_err());
    }
}
