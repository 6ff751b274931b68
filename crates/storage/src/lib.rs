//! Storage for ContextDB: Apache Iceberg tables whose FileIO runs on `object_store`.
//!
//! - [`object_io`]: an iceberg `Storage` over any `Arc<dyn ObjectStore>`.
//! - [`Warehouse`]: where tables live (a local directory by default, memory for tests, or an
//!   S3-compatible bucket) and the FileIO to reach it.
//! - [`table_io`]: snapshot reads as Arrow, Parquet data-file writes, and copy-on-write
//!   snapshot production for the catalog to commit.
//! - [`fs`] and [`synced`]: durability. Local writes return only once `fsync`ed (the catalog
//!   proposes a commit only after the files it points at are durable); [`fault`] simulates
//!   power failures against the same seams for tests.

pub mod fault;
pub mod fs;
pub mod maintenance;
pub mod object_io;
pub mod synced;
pub mod table_io;

use std::path::PathBuf;
use std::sync::Arc;

use iceberg::io::FileIO;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;

/// Where the warehouse (data and metadata files) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A directory on the local filesystem (the embedded default).
    Local { root: PathBuf },
    /// Process memory; gone when the process exits (tests).
    Memory,
    /// An S3-compatible bucket (AWS, MinIO, ...).
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        allow_http: bool,
    },
}

/// A warehouse ready to use: the iceberg FileIO and the location under which tables go.
#[derive(Debug, Clone)]
pub struct Warehouse {
    pub file_io: FileIO,
    /// A URL such as `file:///data/warehouse`, `memory:///<id>` or `s3://bucket/prefix`.
    pub location: String,
    pub store: Arc<dyn ObjectStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open warehouse at {location}: {message}")]
    Open { location: String, message: String },
}

impl Warehouse {
    pub fn open(config: &StoreConfig) -> Result<Warehouse, StorageError> {
        let (store, location): (Arc<dyn ObjectStore>, String) = match config {
            StoreConfig::Local { root } => {
                fs::create_dir_all_durable(&fs::RealFs, root).map_err(|e| StorageError::Open {
                    location: root.display().to_string(),
                    message: e.to_string(),
                })?;
                let root = root.canonicalize().map_err(|e| StorageError::Open {
                    location: root.display().to_string(),
                    message: e.to_string(),
                })?;
                let location = format!("file://{}", root.display());
                // Every write is fsynced (with its directories) before it returns.
                let store = synced::SyncedStore::local(&root).map_err(|e| StorageError::Open {
                    location: location.clone(),
                    message: e.to_string(),
                })?;
                (Arc::new(store), location)
            }
            StoreConfig::Memory => {
                // A fresh id per warehouse so two in-memory databases never share files.
                let id = uuid::Uuid::new_v4();
                (Arc::new(InMemory::new()), format!("memory:///{id}"))
            }
            StoreConfig::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                allow_http,
            } => {
                let location = format!("s3://{bucket}/{}", prefix.trim_matches('/'));
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_allow_http(*allow_http);
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(region) = region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let store = builder.build().map_err(|e| StorageError::Open {
                    location: location.clone(),
                    message: e.to_string(),
                })?;
                (Arc::new(store), location)
            }
        };
        let file_io = object_io::register_store(&location, store.clone());
        Ok(Warehouse {
            file_io,
            location: location.trim_end_matches('/').to_string(),
            store,
        })
    }
}
