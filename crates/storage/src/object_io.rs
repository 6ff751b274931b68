//! An iceberg [`Storage`] over any `Arc<dyn ObjectStore>`.
//!
//! iceberg 0.10 ships only local-fs and memory storages (S3 goes through OpenDAL); the rest of
//! the engine (DataFusion) already speaks `object_store`, so we put iceberg's FileIO on it too
//! and keep one I/O stack.
//!
//! `Storage` must be serde-serialisable (typetag), but an object store is a live client, so the
//! storage serialises only a registry key and looks the store up in a process-wide registry.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage,
    StorageConfig, StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// Process-wide map from registry key to live store.
static STORES: LazyLock<RwLock<HashMap<String, Arc<dyn ObjectStore>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Registers `store` under `key` (replacing any earlier one) and returns a FileIO on it.
pub fn register_store(key: &str, store: Arc<dyn ObjectStore>) -> FileIO {
    STORES
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(key.to_string(), store);
    let factory = ObjectStoreStorageFactory {
        key: key.to_string(),
    };
    FileIOBuilder::new(Arc::new(factory)).build()
}

fn lookup(key: &str) -> Result<Arc<dyn ObjectStore>> {
    STORES
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(key)
        .cloned()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!("object store '{key}' is not registered in this process"),
            )
        })
}

/// Builds [`ObjectStoreStorage`] for a registered store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStoreStorageFactory {
    key: String,
}

#[typetag::serde]
impl StorageFactory for ObjectStoreStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(ObjectStoreStorage {
            key: self.key.clone(),
            store: Some(lookup(&self.key)?),
        }))
    }
}

/// iceberg `Storage` on an object store. Locations are URLs (`file:///a/b`, `memory:///a`,
/// `s3://bucket/a`); the object key is the URL's path, so one store serves one bucket/root.
#[derive(Clone, Serialize, Deserialize)]
pub struct ObjectStoreStorage {
    key: String,
    #[serde(skip)]
    store: Option<Arc<dyn ObjectStore>>,
}

impl fmt::Debug for ObjectStoreStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreStorage")
            .field("key", &self.key)
            .finish()
    }
}

impl ObjectStoreStorage {
    fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        match &self.store {
            Some(store) => Ok(store.clone()),
            // Deserialised in this process: find the live client again.
            None => lookup(&self.key),
        }
    }
}

/// Maps an iceberg location to an object key: strip `scheme://authority`.
pub fn object_path(location: &str) -> Result<ObjectPath> {
    let rest = match location.split_once("://") {
        Some((_scheme, rest)) => match rest.find('/') {
            Some(slash) => &rest[slash..],
            None => "",
        },
        None => location,
    };
    ObjectPath::parse(rest.trim_start_matches('/')).map_err(|e| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("invalid location '{location}': {e}"),
        )
    })
}

fn io_error(what: &str, path: &str, e: object_store::Error) -> Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => ErrorKind::DataInvalid,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, format!("{what} '{path}' failed")).with_source(e)
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStoreStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        match self.store()?.head(&object_path(path)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_error("head", path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let meta = self
            .store()?
            .head(&object_path(path)?)
            .await
            .map_err(|e| io_error("head", path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let result = self
            .store()?
            .get(&object_path(path)?)
            .await
            .map_err(|e| io_error("read", path, e))?;
        result.bytes().await.map_err(|e| io_error("read", path, e))
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        Ok(Box::new(ObjectRead {
            store: self.store()?,
            path: object_path(path)?,
            location: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        self.store()?
            .put(&object_path(path)?, bs.into())
            .await
            .map_err(|e| io_error("write", path, e))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let writer = BufWriter::new(self.store()?, object_path(path)?);
        Ok(Box::new(ObjectWrite {
            writer: Some(writer),
            location: path.to_string(),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.store()?.delete(&object_path(path)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error("delete", path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let store = self.store()?;
        let prefix = object_path(path)?;
        let locations = store.list(Some(&prefix)).map(|m| m.map(|m| m.location));
        let mut deleted = store.delete_stream(locations.boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io_error("delete", path, e)),
            }
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    location: String,
}

#[async_trait]
impl FileRead for ObjectRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.path, range)
            .await
            .map_err(|e| io_error("read", &self.location, e))
    }
}

struct ObjectWrite {
    writer: Option<BufWriter>,
    location: String,
}

#[async_trait]
impl FileWrite for ObjectWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "write after close"))?;
        writer.write_all(&bs).await.map_err(|e| {
            Error::new(ErrorKind::Unexpected, format!("write '{}'", self.location)).with_source(e)
        })
    }

    async fn close(&mut self) -> Result<()> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "file already closed"))?;
        writer.shutdown().await.map_err(|e| {
            Error::new(ErrorKind::Unexpected, format!("close '{}'", self.location)).with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;

    use super::*;

    async fn round_trip(file_io: &FileIO, location: &str) {
        let out = file_io.new_output(location).unwrap();
        let mut writer = out.writer().await.unwrap();
        writer.write(Bytes::from_static(b"hello ")).await.unwrap();
        writer.write(Bytes::from_static(b"world")).await.unwrap();
        writer.close().await.unwrap();
        assert!(writer.close().await.is_err(), "second close must fail");

        let input = file_io.new_input(location).unwrap();
        assert!(input.exists().await.unwrap());
        assert_eq!(input.metadata().await.unwrap().size, 11);
        assert_eq!(&input.read().await.unwrap()[..], b"hello world");
        let reader = input.reader().await.unwrap();
        assert_eq!(&reader.read(6..11).await.unwrap()[..], b"world");

        file_io.delete(location).await.unwrap();
        assert!(!file_io.exists(location).await.unwrap());
    }

    #[tokio::test]
    async fn memory_store_round_trip() {
        let io = register_store("test-mem", Arc::new(InMemory::new()));
        round_trip(&io, "memory:///warehouse/a/b.bin").await;
    }

    #[tokio::test]
    async fn local_store_round_trip_and_prefix_delete() {
        let dir = tempfile::tempdir().unwrap();
        let io = register_store("test-local", Arc::new(LocalFileSystem::new()));
        let base = format!("file://{}", dir.path().display());
        round_trip(&io, &format!("{base}/x/y.bin")).await;

        for name in ["p/1", "p/2", "q/3"] {
            let out = io.new_output(format!("{base}/{name}")).unwrap();
            out.write(Bytes::from_static(b"x")).await.unwrap();
        }
        io.delete_prefix(format!("{base}/p")).await.unwrap();
        assert!(!io.exists(format!("{base}/p/1")).await.unwrap());
        assert!(!io.exists(format!("{base}/p/2")).await.unwrap());
        assert!(io.exists(format!("{base}/q/3")).await.unwrap());
    }

    #[test]
    fn object_path_strips_scheme_and_authority() {
        assert_eq!(object_path("file:///a/b").unwrap().as_ref(), "a/b");
        assert_eq!(object_path("s3://bucket/a/b").unwrap().as_ref(), "a/b");
        assert_eq!(object_path("memory:///w/t").unwrap().as_ref(), "w/t");
        assert_eq!(object_path("/abs/x").unwrap().as_ref(), "abs/x");
    }

    #[test]
    fn unregistered_store_is_a_clear_error() {
        let factory = ObjectStoreStorageFactory { key: "nope".into() };
        let err = factory.build(&StorageConfig::new()).unwrap_err();
        assert!(err.to_string().contains("not registered"), "{err}");
    }
}
