//! An object store whose writes are durable when they return.
//!
//! `object_store`'s `LocalFileSystem` writes a staging file and renames it into place without
//! `fsync`: the object is visible at once but lives in the OS page cache, and a power failure
//! can leave it missing or empty. The catalog proposes a commit only after the data files,
//! manifests and metadata file it points at are written, so those writes must be on disk by
//! then. [`SyncedStore`] wraps a store and, after every put, multipart completion, copy and
//! rename, asks an [`ObjectSync`] to make the object durable before it returns.
//!
//! Deletes are not synced: the store only deletes files that no committed pointer references,
//! so a delete lost to a crash leaves an unreferenced file, never a dangling pointer.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

use crate::fs::{Fs, RealFs, create_dir_all_durable};

/// Makes objects durable: the second half of every write through a [`SyncedStore`].
#[async_trait]
pub trait ObjectSync: Send + Sync + fmt::Debug + 'static {
    /// Makes the object at `location`, and the directory entries that lead to it, durable.
    async fn sync_object(&self, location: &Path) -> Result<()>;
}

/// A store whose puts, multipart completions, copies and renames return only once durable.
#[derive(Debug)]
pub struct SyncedStore {
    inner: Arc<dyn ObjectStore>,
    sync: Arc<dyn ObjectSync>,
}

impl SyncedStore {
    /// Wraps `inner`; `sync` must make objects of `inner` durable.
    pub fn new(inner: Arc<dyn ObjectStore>, sync: Arc<dyn ObjectSync>) -> Self {
        Self { inner, sync }
    }

    /// The local file system with `fsync`, for a warehouse rooted at `root` (an absolute
    /// path). Creates `root` durably.
    pub fn local(root: &FsPath) -> std::io::Result<Self> {
        let sync = LocalSync::new(root)?;
        Ok(Self::new(Arc::new(LocalFileSystem::new()), Arc::new(sync)))
    }
}

impl fmt::Display for SyncedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Synced({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for SyncedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync.sync_object(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SyncedUpload {
            upload,
            location: location.clone(),
            sync: Arc::clone(&self.sync),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync.sync_object(to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        // The target is durable on return; the source's removal may be lost to a crash, which
        // leaves a second copy, never a missing object.
        self.inner.rename_opts(from, to, options).await?;
        self.sync.sync_object(to).await
    }
}

/// A multipart upload that syncs the object after completing it.
#[derive(Debug)]
struct SyncedUpload {
    upload: Box<dyn MultipartUpload>,
    location: Path,
    sync: Arc<dyn ObjectSync>,
}

#[async_trait]
impl MultipartUpload for SyncedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.upload.complete().await?;
        self.sync.sync_object(&self.location).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
    }
}

/// Most directories [`LocalSync`] remembers as durable; past it the set starts afresh (which
/// costs one extra directory sync per level, never correctness).
const DURABLE_DIRS_MAX: usize = 65_536;

/// `fsync` for objects of a [`LocalFileSystem`] rooted at `/`.
///
/// `LocalFileSystem` renames the finished file into place and may create directories on the
/// way, so a sync covers the file's bytes, its entry in its directory and the entry of every
/// directory above it that is not yet known to be durable.
#[derive(Debug, Clone)]
pub struct LocalSync {
    fs: RealFs,
    paths: Arc<LocalFileSystem>,
    /// Directories whose own entry in their parent is durable.
    durable_dirs: Arc<Mutex<HashSet<PathBuf>>>,
}

impl LocalSync {
    /// Creates `root` durably and remembers it as durable.
    pub fn new(root: &FsPath) -> std::io::Result<Self> {
        let fs = RealFs;
        create_dir_all_durable(&fs, root)?;
        let durable_dirs = HashSet::from([root.to_path_buf()]);
        Ok(Self {
            fs,
            paths: Arc::new(LocalFileSystem::new()),
            durable_dirs: Arc::new(Mutex::new(durable_dirs)),
        })
    }

    /// Syncs the file at `path`, its directory, and every directory above it up to the first
    /// one known to be durable.
    fn sync_path(&self, path: &FsPath) -> std::io::Result<()> {
        self.fs.sync_file(path)?;
        let mut newly_durable = Vec::new();
        let mut dir = path.parent();
        while let Some(current) = dir {
            self.fs.sync_dir(current)?;
            // The entry just synced belongs to the level below; `current` itself is durable
            // once its parent is synced, or when it was known to be.
            if self.is_durable(current) {
                break;
            }
            newly_durable.push(current.to_path_buf());
            dir = current.parent();
        }
        let mut known = self.durable_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() + newly_durable.len() > DURABLE_DIRS_MAX {
            known.clear();
        }
        // Every directory pushed had its parent synced on the next turn of the loop, except
        // the last one when the loop ran out of parents (the file system root).
        known.extend(newly_durable);
        Ok(())
    }

    fn is_durable(&self, dir: &FsPath) -> bool {
        self.durable_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(dir)
    }
}

#[async_trait]
impl ObjectSync for LocalSync {
    async fn sync_object(&self, location: &Path) -> Result<()> {
        let path = self.paths.path_to_filesystem(location)?;
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || this.sync_path(&path)).await;
        let error = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(join) => std::io::Error::other(join.to_string()),
        };
        Err(object_store::Error::Generic {
            store: "SyncedLocal",
            source: format!("sync of '{location}' failed: {error}").into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn puts_and_uploads_land_and_remember_directories() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().canonicalize().unwrap().join("warehouse");
        let sync = LocalSync::new(&root).unwrap();
        assert!(root.is_dir());
        let store = SyncedStore::new(Arc::new(LocalFileSystem::new()), Arc::new(sync.clone()));
        let location = Path::from_absolute_path(root.join("t/data/a.parquet")).unwrap();
        store.put(&location, "hello".into()).await.unwrap();
        let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
        assert_eq!(&bytes[..], b"hello");
        assert!(sync.is_durable(&root.join("t/data")));
        assert!(sync.is_durable(&root.join("t")));

        let big = Path::from_absolute_path(root.join("t/metadata/b.avro")).unwrap();
        let mut upload = store.put_multipart(&big).await.unwrap();
        upload.put_part("part one ".into()).await.unwrap();
        upload.put_part("part two".into()).await.unwrap();
        upload.complete().await.unwrap();
        let bytes = store.get(&big).await.unwrap().bytes().await.unwrap();
        assert_eq!(&bytes[..], b"part one part two");
        assert!(sync.is_durable(&root.join("t/metadata")));
    }
}
