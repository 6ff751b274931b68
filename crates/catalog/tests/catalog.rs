//! Behaviour of the raft catalog through its public API: the `iceberg::Catalog` trait, staged
//! multi-table commits, restarts, torn logs and snapshots.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use contextdb_catalog::{
    CatalogError, Command, PointerSwap, RaftCatalog, RaftCatalogConfig, Rejection, StagedTable,
    StagingCatalog, TableChange, layout,
};
use iceberg::io::FileIO;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent, TableRequirement};
use tempfile::TempDir;

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap()
}

fn ns(name: &str) -> NamespaceIdent {
    NamespaceIdent::new(name.to_string())
}

fn ident(namespace: &str, name: &str) -> TableIdent {
    TableIdent::new(ns(namespace), name.to_string())
}

fn raft_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("raft")
}

/// A catalog whose metadata files live on the local file system under the temp dir.
fn fs_config(dir: &TempDir) -> RaftCatalogConfig {
    let warehouse = format!("file://{}", dir.path().join("warehouse").display());
    RaftCatalogConfig::new(raft_dir(dir), FileIO::new_with_fs(), warehouse)
}

/// A catalog whose metadata files live in memory (shared by clones of `file_io`).
fn memory_config(dir: &TempDir, file_io: &FileIO) -> RaftCatalogConfig {
    RaftCatalogConfig::new(raft_dir(dir), file_io.clone(), "memory:///warehouse")
}

async fn create_table(catalog: &RaftCatalog, namespace: &str, name: &str) -> Table {
    catalog
        .create_table(
            &ns(namespace),
            TableCreation::builder()
                .name(name.to_string())
                .schema(schema())
                .build(),
        )
        .await
        .unwrap()
}

/// Commits one property change to `table` through `catalog` (a RaftCatalog or a staging one).
async fn set_property(
    catalog: &dyn Catalog,
    table: &Table,
    key: &str,
    value: &str,
) -> iceberg::Result<Table> {
    let tx = Transaction::new(table);
    let tx = tx
        .update_table_properties()
        .set(key.to_string(), value.to_string())
        .apply(tx)?;
    tx.commit(catalog).await
}

async fn property(catalog: &dyn Catalog, table: &TableIdent, key: &str) -> Option<String> {
    let table = catalog.load_table(table).await.unwrap();
    table.metadata().properties().get(key).cloned()
}

fn metadata_files(dir: &TempDir, namespace: &str, table: &str) -> usize {
    let path = dir
        .path()
        .join("warehouse")
        .join(namespace)
        .join(table)
        .join("metadata");
    fs::read_dir(path).unwrap().count()
}

/// Counts the records of the log segment (format: `[len u32 LE][crc u32 LE][payload]`).
fn log_records(raft_dir: &Path) -> usize {
    let bytes = fs::read(raft_dir.join(layout::LOG_FILE)).unwrap();
    let mut offset = 0;
    let mut records = 0;
    while offset < bytes.len() {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        offset += 8 + len;
        records += 1;
    }
    assert_eq!(offset, bytes.len(), "log ends on a record boundary");
    records
}

#[tokio::test]
async fn namespace_crud() {
    let dir = TempDir::new().unwrap();
    let file_io = FileIO::new_with_memory();
    let catalog = RaftCatalog::open(memory_config(&dir, &file_io))
        .await
        .unwrap();

    assert!(catalog.list_namespaces(None).await.unwrap().is_empty());
    let properties = HashMap::from([("owner".to_string(), "ada".to_string())]);
    let created = catalog
        .create_namespace(&ns("main"), properties.clone())
        .await
        .unwrap();
    assert_eq!(created.properties(), &properties);
    let nested = NamespaceIdent::from_strs(["main", "inner"]).unwrap();
    catalog
        .create_namespace(&nested, HashMap::new())
        .await
        .unwrap();
    catalog
        .create_namespace(&ns("other"), HashMap::new())
        .await
        .unwrap();

    let error = catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NamespaceAlreadyExists);
    let orphan = NamespaceIdent::from_strs(["missing", "child"]).unwrap();
    let error = catalog
        .create_namespace(&orphan, HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NamespaceNotFound);

    assert_eq!(
        catalog.list_namespaces(None).await.unwrap(),
        vec![ns("main"), ns("other")]
    );
    assert_eq!(
        catalog.list_namespaces(Some(&ns("main"))).await.unwrap(),
        vec![nested.clone()]
    );
    assert_eq!(
        catalog
            .get_namespace(&ns("main"))
            .await
            .unwrap()
            .properties(),
        &properties
    );
    assert!(catalog.namespace_exists(&nested).await.unwrap());
    assert!(!catalog.namespace_exists(&ns("missing")).await.unwrap());

    let replaced = HashMap::from([("tier".to_string(), "gold".to_string())]);
    catalog
        .update_namespace(&ns("main"), replaced.clone())
        .await
        .unwrap();
    assert_eq!(
        catalog
            .get_namespace(&ns("main"))
            .await
            .unwrap()
            .properties(),
        &replaced
    );

    let error = catalog.drop_namespace(&ns("main")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PreconditionFailed, "{error}");
    catalog.drop_namespace(&nested).await.unwrap();
    catalog.drop_namespace(&ns("main")).await.unwrap();
    assert_eq!(
        catalog.list_namespaces(None).await.unwrap(),
        vec![ns("other")]
    );
    let error = catalog.get_namespace(&ns("main")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NamespaceNotFound);
    catalog.shutdown().await;
}

#[tokio::test]
async fn table_crud_and_commits() {
    let dir = TempDir::new().unwrap();
    let file_io = FileIO::new_with_memory();
    let catalog = RaftCatalog::open(memory_config(&dir, &file_io))
        .await
        .unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    catalog
        .create_namespace(&ns("archive"), HashMap::new())
        .await
        .unwrap();

    let person = ident("main", "Person");
    let table = create_table(&catalog, "main", "Person").await;
    let location = table.metadata_location().unwrap().to_string();
    assert!(
        location.starts_with("memory:///warehouse/main/Person/metadata/00000-"),
        "{location}"
    );
    assert!(file_io.exists(&location).await.unwrap());
    assert_eq!(table.metadata().current_schema().as_ref(), &schema());

    let error = catalog
        .create_table(
            &ns("main"),
            TableCreation::builder()
                .name("Person".into())
                .schema(schema())
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TableAlreadyExists);
    let error = catalog
        .create_table(
            &ns("missing"),
            TableCreation::builder()
                .name("T".into())
                .schema(schema())
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NamespaceNotFound);

    assert_eq!(
        catalog.list_tables(&ns("main")).await.unwrap(),
        vec![person.clone()]
    );
    assert!(catalog.table_exists(&person).await.unwrap());

    // A transaction commit writes version 1 and moves the pointer, as one log entry.
    let before = catalog.applied_index();
    let updated = set_property(&*catalog, &table, "kind", "node")
        .await
        .unwrap();
    assert_eq!(catalog.applied_index(), before + 1);
    let updated_location = updated.metadata_location().unwrap();
    assert!(
        updated_location.contains("/metadata/00001-"),
        "{updated_location}"
    );
    assert_eq!(
        property(&*catalog, &person, "kind").await.as_deref(),
        Some("node")
    );
    let loaded = catalog.load_table(&person).await.unwrap();
    assert_eq!(loaded.metadata_location(), Some(updated_location));
    assert_eq!(
        loaded.metadata().metadata_log().len(),
        1,
        "the previous file is logged"
    );
    assert_eq!(
        catalog.table_locations().await,
        BTreeMap::from([(person.clone(), updated_location.to_string())])
    );

    let moved = ident("archive", "OldPerson");
    catalog.rename_table(&person, &moved).await.unwrap();
    assert!(!catalog.table_exists(&person).await.unwrap());
    assert_eq!(
        property(&*catalog, &moved, "kind").await.as_deref(),
        Some("node")
    );
    let error = catalog.load_table(&person).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TableNotFound);

    catalog.drop_table(&moved).await.unwrap();
    let error = catalog.drop_table(&moved).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TableNotFound);
    assert!(
        catalog
            .list_tables(&ns("archive"))
            .await
            .unwrap()
            .is_empty()
    );
    catalog.shutdown().await;
}

#[tokio::test]
async fn register_and_purge_tables() {
    let dir = TempDir::new().unwrap();
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    let table = create_table(&catalog, "main", "Source").await;
    let table = set_property(&*catalog, &table, "k", "v").await.unwrap();
    let location = table.metadata_location().unwrap().to_string();

    let registered = ident("main", "Registered");
    let loaded = catalog
        .register_table(&registered, location.clone())
        .await
        .unwrap();
    assert_eq!(loaded.metadata_location(), Some(location.as_str()));
    assert_eq!(
        property(&*catalog, &registered, "k").await.as_deref(),
        Some("v")
    );
    let error = catalog
        .register_table(&ident("main", "Broken"), format!("{location}.missing"))
        .await
        .unwrap_err();
    assert!(
        !catalog
            .table_exists(&ident("main", "Broken"))
            .await
            .unwrap(),
        "{error}"
    );

    catalog.drop_table(&registered).await.unwrap();
    catalog.purge_table(&ident("main", "Source")).await.unwrap();
    assert!(catalog.list_tables(&ns("main")).await.unwrap().is_empty());
    assert_eq!(
        metadata_files(&dir, "main", "Source"),
        0,
        "purge deletes metadata files"
    );
    catalog.shutdown().await;
}

#[tokio::test]
async fn concurrent_commits_to_one_table_lose_no_update() {
    let dir = TempDir::new().unwrap();
    let file_io = FileIO::new_with_memory();
    let catalog = RaftCatalog::open(memory_config(&dir, &file_io))
        .await
        .unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    let table = create_table(&catalog, "main", "Hot").await;

    // Every writer starts from the same version; compare-and-set turns the races into retryable
    // conflicts that Transaction::commit retries, so every property must survive. A writer fails
    // at most once per other writer's success, so 4 writers stay within the default 4 retries.
    const WRITERS: usize = 4;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let catalog = Arc::clone(&catalog);
            let table = table.clone();
            tokio::spawn(async move {
                set_property(&*catalog, &table, &format!("writer{i}"), "done").await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let loaded = catalog.load_table(&ident("main", "Hot")).await.unwrap();
    for i in 0..WRITERS {
        assert_eq!(
            loaded
                .metadata()
                .properties()
                .get(&format!("writer{i}"))
                .map(String::as_str),
            Some("done"),
            "update of writer {i} was lost"
        );
    }
    catalog.shutdown().await;
}

#[tokio::test]
async fn restart_recovers_namespaces_and_tables() {
    let dir = TempDir::new().unwrap();
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    let properties = HashMap::from([("graph".to_string(), "yes".to_string())]);
    catalog
        .create_namespace(&ns("main"), properties.clone())
        .await
        .unwrap();
    let person = create_table(&catalog, "main", "Person").await;
    set_property(&*catalog, &person, "kind", "node")
        .await
        .unwrap();
    create_table(&catalog, "main", "KNOWS").await;
    let view = catalog.catalog_view();
    catalog.shutdown().await;
    drop(catalog);

    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    assert_eq!(
        catalog
            .get_namespace(&ns("main"))
            .await
            .unwrap()
            .properties(),
        &properties
    );
    assert_eq!(catalog.table_locations().await, view.tables);
    assert!(
        catalog.applied_index() >= view.applied_index,
        "every entry committed before the restart is applied when open returns"
    );
    assert_eq!(
        property(&*catalog, &ident("main", "Person"), "kind")
            .await
            .as_deref(),
        Some("node")
    );
    // The recovered catalog keeps committing.
    let knows = catalog.load_table(&ident("main", "KNOWS")).await.unwrap();
    set_property(&*catalog, &knows, "kind", "edge")
        .await
        .unwrap();

    // Dropping without shutdown stops the node in the background; a reopen waits for it.
    drop(catalog);
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    assert_eq!(
        property(&*catalog, &ident("main", "KNOWS"), "kind")
            .await
            .as_deref(),
        Some("edge")
    );
    catalog.shutdown().await;
}

#[tokio::test]
async fn a_raft_dir_opens_only_once() {
    let dir = TempDir::new().unwrap();
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    let error = RaftCatalog::open(fs_config(&dir)).await.unwrap_err();
    assert!(matches!(error, CatalogError::Locked { .. }), "{error}");
    catalog.shutdown().await;
    // Shutdown releases the directory.
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    catalog.shutdown().await;

    let mut config = fs_config(&dir);
    config.snapshot_every_entries = 0;
    let error = RaftCatalog::open(config).await.unwrap_err();
    assert!(matches!(error, CatalogError::InvalidConfig(_)), "{error}");

    // The directory belongs to node 1: opening it as node 2 is refused, not left to time out.
    let mut config = fs_config(&dir);
    config.node_id = 2;
    let error = RaftCatalog::open(config).await.unwrap_err();
    assert!(matches!(error, CatalogError::InvalidConfig(_)), "{error}");
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    catalog.shutdown().await;
}

#[tokio::test]
async fn staging_commits_several_tables_in_one_log_entry() {
    let dir = TempDir::new().unwrap();
    let file_io = FileIO::new_with_memory();
    let catalog = RaftCatalog::open(memory_config(&dir, &file_io))
        .await
        .unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    let person = create_table(&catalog, "main", "Person").await;
    let knows = create_table(&catalog, "main", "KNOWS").await;
    let before = catalog.catalog_view();

    let staging = StagingCatalog::new(Arc::clone(&catalog));
    set_property(&staging, &person, "first", "1").await.unwrap();
    // Starts from the committed version; Transaction::commit rebases it on the staged one.
    set_property(&staging, &person, "second", "2")
        .await
        .unwrap();
    set_property(&staging, &knows, "edge", "yes").await.unwrap();
    assert_eq!(
        property(&staging, &ident("main", "Person"), "first")
            .await
            .as_deref(),
        Some("1"),
        "the staging catalog sees its own changes"
    );
    // Nothing is visible or proposed before the commit.
    assert_eq!(catalog.catalog_view(), before);
    assert_eq!(
        property(&*catalog, &ident("main", "Person"), "first").await,
        None
    );
    assert_eq!(
        staging.staged_tables().await,
        vec![ident("main", "Person"), ident("main", "KNOWS")]
    );

    let tables = staging.commit().await.unwrap();
    assert_eq!(tables.len(), 2);
    assert_eq!(
        catalog.applied_index(),
        before.applied_index + 1,
        "one log entry"
    );
    let person = ident("main", "Person");
    assert_eq!(
        property(&*catalog, &person, "first").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        property(&*catalog, &person, "second").await.as_deref(),
        Some("2")
    );
    assert_eq!(
        property(&*catalog, &ident("main", "KNOWS"), "edge")
            .await
            .as_deref(),
        Some("yes")
    );
    // The two staged transactions on Person became one new metadata version.
    let loaded = catalog.load_table(&person).await.unwrap();
    assert!(
        loaded
            .metadata_location()
            .unwrap()
            .contains("/metadata/00001-")
    );
    catalog.shutdown().await;
}

#[tokio::test]
async fn staged_conflict_on_one_table_changes_no_table() {
    let dir = TempDir::new().unwrap();
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    let person = create_table(&catalog, "main", "Person").await;
    let knows = create_table(&catalog, "main", "KNOWS").await;

    let staging = StagingCatalog::new(Arc::clone(&catalog));
    set_property(&staging, &person, "staged", "yes")
        .await
        .unwrap();
    let tx = Transaction::new(&knows);
    let tx = tx
        .update_schema()
        .add_column(AddColumn::optional(
            "weight",
            Type::Primitive(PrimitiveType::Double),
        ))
        .apply(tx)
        .unwrap();
    tx.commit(&staging).await.unwrap();

    // Another writer changes KNOWS' schema first: the staged schema change no longer applies.
    let tx = Transaction::new(&knows);
    let tx = tx
        .update_schema()
        .add_column(AddColumn::optional(
            "since",
            Type::Primitive(PrimitiveType::Long),
        ))
        .apply(tx)
        .unwrap();
    tx.commit(&*catalog).await.unwrap();
    let before = catalog.catalog_view();

    let error = staging.commit().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CatalogCommitConflicts, "{error}");
    assert_eq!(catalog.catalog_view(), before, "no pointer moved");
    assert_eq!(
        property(&*catalog, &ident("main", "Person"), "staged").await,
        None
    );
    let knows = catalog.load_table(&ident("main", "KNOWS")).await.unwrap();
    let columns: Vec<_> = knows
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|field| field.name.clone())
        .collect();
    assert_eq!(columns, vec!["id", "since"]);
    assert_eq!(
        metadata_files(&dir, "main", "Person"),
        1,
        "no orphan metadata file is left"
    );
    catalog.shutdown().await;
}

#[tokio::test]
async fn pointer_swaps_are_all_or_nothing() {
    let dir = TempDir::new().unwrap();
    let file_io = FileIO::new_with_memory();
    let catalog = RaftCatalog::open(memory_config(&dir, &file_io))
        .await
        .unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    let a = create_table(&catalog, "main", "A").await;
    let b = create_table(&catalog, "main", "B").await;
    let before = catalog.catalog_view();

    // A's expectation holds, B's is stale: the replicated command must change neither.
    let response = catalog
        .raft()
        .client_write(Command::Commit {
            changes: vec![
                PointerSwap {
                    ident: ident("main", "A"),
                    expected: Some(a.metadata_location().unwrap().to_string()),
                    new_location: "memory:///elsewhere/a.json".to_string(),
                },
                PointerSwap {
                    ident: ident("main", "B"),
                    expected: Some("memory:///stale.json".to_string()),
                    new_location: "memory:///elsewhere/b.json".to_string(),
                },
            ],
        })
        .await
        .unwrap();
    assert_eq!(
        response.data,
        Err(Rejection::Conflict {
            ident: ident("main", "B"),
            expected: Some("memory:///stale.json".to_string()),
            actual: Some(b.metadata_location().unwrap().to_string()),
        })
    );
    assert_eq!(catalog.table_locations().await, before.tables);

    // Through commit_changes, a requirement that fails on B keeps A's update out too.
    let error = catalog
        .commit_changes(vec![
            TableChange {
                ident: ident("main", "A"),
                requirements: vec![],
                updates: vec![iceberg::TableUpdate::SetProperties {
                    updates: HashMap::from([("k".to_string(), "v".to_string())]),
                }],
            },
            TableChange {
                ident: ident("main", "B"),
                requirements: vec![TableRequirement::UuidMatch {
                    uuid: uuid_other_than(b.metadata().uuid()),
                }],
                updates: vec![],
            },
        ])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CatalogCommitConflicts);
    assert_eq!(catalog.table_locations().await, before.tables);
    assert_eq!(property(&*catalog, &ident("main", "A"), "k").await, None);
    catalog.shutdown().await;
}

fn uuid_other_than(uuid: uuid::Uuid) -> uuid::Uuid {
    let mut bytes = *uuid.as_bytes();
    bytes[0] ^= 0xff;
    uuid::Uuid::from_bytes(bytes)
}

#[tokio::test]
async fn torn_log_tail_recovers_to_the_last_valid_record() {
    let dir = TempDir::new().unwrap();
    let log_path = raft_dir(&dir).join(layout::LOG_FILE);
    let table_ident = ident("main", "T");
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    let table = create_table(&catalog, "main", "T").await;
    let table = set_property(&*catalog, &table, "v", "1").await.unwrap();
    set_property(&*catalog, &table, "v", "2").await.unwrap();
    catalog.shutdown().await;
    drop(catalog);

    // A crash in the middle of writing the last record (v=2) leaves it cut short.
    let len = fs::metadata(&log_path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&log_path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    assert_eq!(
        property(&*catalog, &table_ident, "v").await.as_deref(),
        Some("1")
    );
    let table = catalog.load_table(&table_ident).await.unwrap();
    set_property(&*catalog, &table, "v", "3").await.unwrap();
    catalog.shutdown().await;
    drop(catalog);

    // Garbage after the last record (a torn header and a payload with a bad CRC) is dropped.
    let mut file = OpenOptions::new().append(true).open(&log_path).unwrap();
    file.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, b'{', b'"', b'x'])
        .unwrap();
    drop(file);
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    assert_eq!(
        property(&*catalog, &table_ident, "v").await.as_deref(),
        Some("3")
    );
    let table = catalog.load_table(&table_ident).await.unwrap();
    set_property(&*catalog, &table, "v", "4").await.unwrap();
    catalog.shutdown().await;
    drop(catalog);
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    assert_eq!(
        property(&*catalog, &table_ident, "v").await.as_deref(),
        Some("4")
    );
    catalog.shutdown().await;
}

#[tokio::test]
async fn damage_in_the_middle_of_the_log_refuses_to_start_until_repaired() {
    let dir = TempDir::new().unwrap();
    let log_path = raft_dir(&dir).join(layout::LOG_FILE);
    let table_ident = ident("main", "T");
    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    let mut table = create_table(&catalog, "main", "T").await;
    let mut lengths = Vec::new();
    for v in 1..=4 {
        table = set_property(&*catalog, &table, "v", &v.to_string())
            .await
            .unwrap();
        lengths.push(fs::metadata(&log_path).unwrap().len());
    }
    catalog.shutdown().await;
    drop(catalog);

    // A bit flips inside the entry that set v=3; the entry of v=4 after it is intact.
    let damaged_at = lengths[1];
    let mut bytes = fs::read(&log_path).unwrap();
    bytes[damaged_at as usize + 20] ^= 0x01;
    fs::write(&log_path, &bytes).unwrap();

    let error = RaftCatalog::open(fs_config(&dir)).await.unwrap_err();
    assert!(
        matches!(error, CatalogError::DamagedLog { offset, .. } if offset == damaged_at),
        "{error}"
    );
    let message = error.to_string();
    let command = format!("contextdb repair-log --data-dir {}", dir.path().display());
    assert!(message.contains(&command), "{message}");
    assert!(
        message.contains(&log_path.display().to_string()),
        "{message}"
    );
    assert!(message.contains(&format!("byte {damaged_at}")), "{message}");
    assert_eq!(
        fs::read(&log_path).unwrap(),
        bytes,
        "refusing changes nothing"
    );

    let report = contextdb_catalog::repair_log(&raft_dir(&dir)).unwrap();
    assert_eq!(report.cut_at, Some(damaged_at), "{report}");
    assert_eq!(report.entries_dropped, 1, "{report}");
    assert_eq!(
        fs::read(report.backup_path.as_ref().unwrap()).unwrap(),
        bytes
    );

    let catalog = RaftCatalog::open(fs_config(&dir)).await.unwrap();
    assert_eq!(
        property(&*catalog, &table_ident, "v").await.as_deref(),
        Some("2")
    );
    let table = catalog.load_table(&table_ident).await.unwrap();
    set_property(&*catalog, &table, "v", "5").await.unwrap();
    catalog.shutdown().await;
}

#[tokio::test]
async fn snapshots_bound_the_log_and_survive_restart() {
    const EVERY: u64 = 5;
    const COMMITS: usize = 60;
    let dir = TempDir::new().unwrap();
    let config = || {
        let mut config = fs_config(&dir);
        config.snapshot_every_entries = EVERY;
        config
    };
    let table_ident = ident("main", "T");
    let catalog = RaftCatalog::open(config()).await.unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    let mut table = create_table(&catalog, "main", "T").await;
    for i in 1..=COMMITS {
        table = set_property(&*catalog, &table, "n", &i.to_string())
            .await
            .unwrap();
    }
    let applied = catalog.applied_index();
    assert!(applied > COMMITS as u64);
    // Snapshots and purges run in the background; wait until they have caught up.
    catalog
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |metrics| {
                metrics
                    .purged
                    .is_some_and(|purged| purged.index + 2 * EVERY >= applied)
            },
            "log purged up to the latest snapshot",
        )
        .await
        .unwrap();
    let records = log_records(&raft_dir(&dir));
    assert!(
        records <= 2 * EVERY as usize + 1,
        "{records} records in the log after {applied} entries"
    );
    assert!(raft_dir(&dir).join(layout::SNAPSHOT_FILE).exists());
    catalog.shutdown().await;
    drop(catalog);

    let catalog = RaftCatalog::open(config()).await.unwrap();
    assert!(catalog.applied_index() >= applied);
    assert_eq!(
        property(&*catalog, &table_ident, "n").await.as_deref(),
        Some(COMMITS.to_string().as_str())
    );
    let table = catalog.load_table(&table_ident).await.unwrap();
    set_property(&*catalog, &table, "n", "after").await.unwrap();
    assert_eq!(
        property(&*catalog, &table_ident, "n").await.as_deref(),
        Some("after")
    );
    catalog.shutdown().await;
}

/// A staged table is invisible until the commit that creates it, which can carry its first
/// changes and other tables' changes: all of it applies in one log entry, or none of it.
#[tokio::test]
async fn staged_creation_commits_with_its_first_changes() {
    let dir = TempDir::new().unwrap();
    let file_io = FileIO::new_with_memory();
    let catalog = RaftCatalog::open(memory_config(&dir, &file_io))
        .await
        .unwrap();
    catalog
        .create_namespace(&ns("main"), HashMap::new())
        .await
        .unwrap();
    let existing = create_table(&catalog, "main", "Existing").await;
    let creation = |name: &str| {
        TableCreation::builder()
            .name(name.to_string())
            .schema(schema())
            .build()
    };
    let staged = catalog
        .stage_create_table(&ns("main"), creation("New"))
        .await
        .unwrap();
    assert!(!catalog.table_exists(&ident("main", "New")).await.unwrap());
    let set = |table: &Table, key: &str| TableChange {
        ident: table.identifier().clone(),
        requirements: vec![TableRequirement::UuidMatch {
            uuid: table.metadata().uuid(),
        }],
        updates: vec![iceberg::TableUpdate::SetProperties {
            updates: HashMap::from([(key.to_string(), "yes".to_string())]),
        }],
    };

    // A conflict on the other table: the new one is not created either.
    let stale = TableChange {
        requirements: vec![TableRequirement::UuidMatch {
            uuid: uuid_other_than(existing.metadata().uuid()),
        }],
        ..set(&existing, "touched")
    };
    let error = catalog
        .commit_changes_creating(
            vec![StagedTable::new(staged.clone())],
            vec![set(&staged, "filled"), stale],
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CatalogCommitConflicts, "{error}");
    assert!(!catalog.table_exists(&ident("main", "New")).await.unwrap());

    let staged = catalog
        .stage_create_table(&ns("main"), creation("New"))
        .await
        .unwrap();
    let before = catalog.applied_index();
    let committed = catalog
        .commit_changes_creating(
            vec![StagedTable::new(staged.clone())],
            vec![set(&staged, "filled"), set(&existing, "touched")],
        )
        .await
        .unwrap();
    assert_eq!(catalog.applied_index(), before + 1, "one log entry");
    assert_eq!(committed.len(), 2);
    assert_eq!(
        property(&*catalog, &ident("main", "New"), "filled")
            .await
            .as_deref(),
        Some("yes")
    );
    assert_eq!(
        property(&*catalog, &ident("main", "Existing"), "touched")
            .await
            .as_deref(),
        Some("yes")
    );

    // Creating a table that exists by now is refused, whoever created it.
    let twice = catalog
        .stage_create_table(&ns("main"), creation("Late"))
        .await
        .unwrap();
    create_table(&catalog, "main", "Late").await;
    let error = catalog
        .commit_changes_creating(vec![StagedTable::new(twice)], vec![])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CatalogCommitConflicts, "{error}");

    // A replacement takes the old table's place whole, unless the old one moved meanwhile.
    let old = catalog.load_table(&ident("main", "New")).await.unwrap();
    let replacement = catalog
        .stage_replace_table(&ns("main"), creation("New"))
        .await
        .unwrap();
    assert_eq!(replacement.replaces.as_deref(), old.metadata_location());
    set_property(&*catalog, &old, "moved", "yes").await.unwrap();
    let error = catalog
        .commit_changes_creating(vec![replacement], vec![])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CatalogCommitConflicts, "{error}");
    let replacement = catalog
        .stage_replace_table(&ns("main"), creation("New"))
        .await
        .unwrap();
    let uuid = replacement.table.metadata().uuid();
    catalog
        .commit_changes_creating(vec![replacement], vec![])
        .await
        .unwrap();
    let now = catalog.load_table(&ident("main", "New")).await.unwrap();
    assert_eq!(now.metadata().uuid(), uuid);
    assert_ne!(uuid, old.metadata().uuid());
    catalog.shutdown().await;
}
