//! Power failures at many points of a stream of commits.
//!
//! Each run builds one simulated machine: the raft directory on a [`FaultFs`] and the warehouse
//! on a [`FaultObjectStore`] behind the production [`SyncedStore`], all on one [`Power`]
//! switch. It commits a batch of two-table transactions (a data file, a manifest, a manifest
//! list and a metadata file per table, one log entry for both) and the power fails after the
//! k-th mutating I/O operation. Every write not yet synced is then lost, kept or torn (chosen
//! from k), and the machine restarts. The restarted catalog must open, hold every commit that
//! was acknowledged before the failure, hold both tables of every commit or neither, and every
//! snapshot it points at must read back from files that exist; then it must accept a new
//! commit. After its commits the workload maintains both tables as COMPACT and VACUUM do
//! (merge every data file, expire every replaced snapshot, delete every file no snapshot
//! references), so the power fails inside those too.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int64Array, RecordBatch};
use contextdb_catalog::{RaftCatalog, RaftCatalogConfig, TableChange};
use contextdb_storage::fault::{FaultFs, FaultObjectStore, Power};
use contextdb_storage::maintenance;
use contextdb_storage::object_io::register_store;
use contextdb_storage::synced::SyncedStore;
use contextdb_storage::table_io::{self, DataChange};
use futures::StreamExt;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};

/// Two-table commits per run.
const COMMITS: u64 = 10;
/// Log entries between catalog snapshots: small, so that snapshots and log purges (atomic
/// file replacements) happen inside the runs too.
const SNAPSHOT_EVERY_ENTRIES: u64 = 4;
/// Most crash points tried; the step between them grows with the workload's operation count.
const CRASH_POINTS_MAX: u64 = 400;
/// Machines simulated at once (each mostly waits for raft timers).
const PARALLEL_RUNS: usize = 8;
/// Longest a single catalog call may take before the run counts as hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

const TABLES: [&str; 2] = ["A", "B"];

fn raft_dir() -> PathBuf {
    PathBuf::from("/data/raft")
}

fn namespace() -> NamespaceIdent {
    NamespaceIdent::new("main".to_string())
}

fn ident(name: &str) -> TableIdent {
    TableIdent::new(namespace(), name.to_string())
}

/// One simulated machine: its power, disk and object store survive restarts.
struct Machine {
    power: Arc<Power>,
    fs: FaultFs,
    store: FaultObjectStore,
    warehouse: String,
}

impl Machine {
    fn new() -> Self {
        let power = Power::new();
        Machine {
            fs: FaultFs::new(Arc::clone(&power)),
            store: FaultObjectStore::new(Arc::clone(&power)),
            warehouse: format!("memory:///{}/warehouse", uuid::Uuid::new_v4()),
            power,
        }
    }

    async fn open(&self) -> Result<Arc<RaftCatalog>, String> {
        let store = Arc::new(SyncedStore::new(
            Arc::new(self.store.clone()),
            Arc::new(self.store.clone()),
        ));
        let file_io = register_store(&self.warehouse, store);
        let mut config = RaftCatalogConfig::new(raft_dir(), file_io, self.warehouse.clone())
            .with_fs(Arc::new(self.fs.clone()));
        config.snapshot_every_entries = SNAPSHOT_EVERY_ENTRIES;
        timed(RaftCatalog::open(config)).await
    }

    /// The power fails (if it has not yet), unsynced state goes its way, and power returns.
    async fn reboot(&self, seed: u64) {
        self.power.fail();
        self.fs.power_fail(seed);
        self.store.power_fail(seed).await;
        self.power.restore();
    }
}

async fn timed<T, E: std::fmt::Display>(
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// What the workload saw acknowledged.
#[derive(Debug, Default)]
struct Acknowledged {
    tables_created: bool,
    commits: Vec<u64>,
}

/// Creates the tables if missing, then commits `first..first + count`; stops at the first error,
/// which must be the power failure.
async fn workload(
    machine: &Machine,
    first: u64,
    count: u64,
    acked: &mut Acknowledged,
) -> Result<(), String> {
    let catalog = machine.open().await?;
    let result = async {
        if !timed(catalog.namespace_exists(&namespace())).await? {
            timed(catalog.create_namespace(&namespace(), Default::default())).await?;
        }
        for name in TABLES {
            if !timed(catalog.table_exists(&ident(name))).await? {
                let creation = TableCreation::builder()
                    .name(name.to_string())
                    .schema(schema())
                    .build();
                timed(catalog.create_table(&namespace(), creation)).await?;
            }
        }
        acked.tables_created = true;
        for id in first..first + count {
            commit(&catalog, id).await?;
            acked.commits.push(id);
        }
        for name in TABLES {
            maintain(&catalog, &machine.store, name).await?;
        }
        Ok(())
    }
    .await;
    catalog.shutdown().await;
    result
}

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .expect("schema")
}

/// One data file holding `id` in each table, committed in one catalog entry.
async fn commit(catalog: &Arc<RaftCatalog>, id: u64) -> Result<(), String> {
    let mut tables = Vec::new();
    for name in TABLES {
        tables.push(timed(catalog.load_table(&ident(name))).await?);
    }
    // One commit, one timestamp for both tables.
    let commit_ms = table_io::commit_timestamp_ms(&tables);
    let mut changes = Vec::new();
    for (name, table) in TABLES.iter().zip(tables) {
        let schema = table_io::arrow_schema(&table).map_err(|e| e.to_string())?;
        let ids = Int64Array::from(vec![id as i64]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ids)]).map_err(|e| e.to_string())?;
        let added = timed(table_io::write_data_files(&table, &[batch])).await?;
        let change = DataChange {
            added,
            ..Default::default()
        };
        let (requirements, updates) =
            timed(table_io::produce_snapshot(&table, change, commit_ms)).await?;
        changes.push(TableChange {
            ident: ident(name),
            requirements,
            updates,
        });
    }
    timed(catalog.commit_changes(changes)).await.map(|_| ())
}

/// Compacts every data file of `name` into one, expires every snapshot but the current one and
/// deletes every file no snapshot references, as `COMPACT` and `VACUUM` with no retention.
async fn maintain(
    catalog: &Arc<RaftCatalog>,
    store: &FaultObjectStore,
    name: &str,
) -> Result<(), String> {
    let table = timed(catalog.load_table(&ident(name))).await?;
    let files = timed(maintenance::live_files(&table)).await?;
    if files.len() > 1 {
        let change = timed(maintenance::compact_files(&table, &files)).await?;
        let commit_ms = table_io::commit_timestamp_ms([&table]);
        let (requirements, updates) =
            timed(table_io::produce_snapshot(&table, change, commit_ms)).await?;
        let change = TableChange {
            ident: ident(name),
            requirements,
            updates,
        };
        timed(catalog.commit_changes(vec![change])).await?;
    }
    let boundary = table_io::now_ms();
    let table = timed(catalog.load_table(&ident(name))).await?;
    let expired = maintenance::expired_snapshots(&table, boundary);
    if !expired.is_empty() {
        let (requirements, updates) = maintenance::expire_change(&table, expired);
        let change = TableChange {
            ident: ident(name),
            requirements,
            updates,
        };
        timed(catalog.commit_changes(vec![change])).await?;
    }
    let table = timed(catalog.load_table(&ident(name))).await?;
    let keep = timed(maintenance::referenced_files(&table, boundary)).await?;
    timed(maintenance::remove_unreferenced(
        store,
        table.metadata().location(),
        &keep,
        &[],
        boundary,
    ))
    .await?;
    Ok(())
}

/// The ids in every snapshot of `name`, checking that each snapshot reads back; returns the
/// current snapshot's ids.
async fn read_table(catalog: &RaftCatalog, name: &str) -> Result<BTreeSet<u64>, String> {
    let table = timed(catalog.load_table(&ident(name))).await?;
    let snapshots: Vec<i64> = table
        .metadata()
        .snapshots()
        .map(|snapshot| snapshot.snapshot_id())
        .collect();
    for snapshot in snapshots {
        timed(table_io::read_snapshot(&table, Some(snapshot))).await?;
    }
    let data = timed(table_io::read_snapshot(&table, None)).await?;
    let mut ids = BTreeSet::new();
    for batch in data.batches() {
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("id column is not Int64")?;
        for row in 0..column.len() {
            assert!(ids.insert(column.value(row) as u64), "id read twice");
        }
    }
    Ok(ids)
}

/// Checks the restarted machine against what was acknowledged; returns the commits found.
async fn check_recovered(machine: &Machine, acked: &Acknowledged) -> Result<u64, String> {
    let catalog = machine.open().await?;
    let result = async {
        let mut found: Vec<BTreeSet<u64>> = Vec::new();
        for name in TABLES {
            if timed(catalog.table_exists(&ident(name))).await? {
                found.push(read_table(&catalog, name).await?);
            } else if acked.tables_created {
                return Err(format!("acknowledged table {name} is gone"));
            } else {
                found.push(BTreeSet::new());
            }
        }
        if found[0] != found[1] {
            return Err(format!(
                "half-applied commit: A {:?}, B {:?}",
                found[0], found[1]
            ));
        }
        let ids = &found[0];
        let n = ids.len() as u64;
        if *ids != (1..=n).collect::<BTreeSet<u64>>() {
            return Err(format!("ids are not a prefix of the commits: {ids:?}"));
        }
        for id in &acked.commits {
            if !ids.contains(id) {
                return Err(format!("acknowledged commit {id} lost; found {ids:?}"));
            }
        }
        // At most the one commit in flight at the failure may appear unacknowledged.
        if n > acked.commits.len() as u64 + 1 {
            return Err(format!(
                "{n} commits found, {} acknowledged",
                acked.commits.len()
            ));
        }
        Ok(n)
    }
    .await;
    catalog.shutdown().await;
    result
}

/// Runs the workload with the power failing after `crash_after` operations, restarts, checks,
/// and commits once more after recovery. Returns whether the power actually failed.
async fn run_crash_point(crash_after: u64) -> Result<bool, String> {
    let machine = Machine::new();
    let mut acked = Acknowledged::default();
    machine.power.crash_after(crash_after);
    let outcome = workload(&machine, 1, COMMITS, &mut acked).await;
    let crashed = machine.power.is_off();
    if let Err(e) = &outcome
        && !crashed
    {
        return Err(format!("workload failed without a power failure: {e}"));
    }
    machine.reboot(crash_after).await;
    let n = check_recovered(&machine, &acked)
        .await
        .map_err(|e| format!("after {crash_after} operations ({acked:?}): {e}"))?;

    // The recovered log and warehouse take new commits, and those survive the next failure.
    let mut more = Acknowledged::default();
    workload(&machine, n + 1, 1, &mut more)
        .await
        .map_err(|e| format!("commit after recovery at {crash_after}: {e}"))?;
    machine.reboot(crash_after + 1).await;
    more.commits.splice(0..0, 1..=n);
    check_recovered(&machine, &more)
        .await
        .map_err(|e| format!("second restart after {crash_after}: {e}"))?;
    Ok(crashed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_commit_survives_power_failures() {
    // A dry run counts the workload's mutating operations.
    let machine = Machine::new();
    let mut acked = Acknowledged::default();
    workload(&machine, 1, COMMITS, &mut acked)
        .await
        .expect("workload without failure");
    let total = machine.power.operations();
    assert_eq!(acked.commits.len() as u64, COMMITS);
    // The maintenance did its work: one snapshot, one data file, nothing else left behind
    // (before the power fails: a delete not yet synced may come undone, as on a real disk).
    let catalog = machine.open().await.expect("open");
    for name in TABLES {
        let table = catalog.load_table(&ident(name)).await.expect("table");
        assert_eq!(table.metadata().snapshots().count(), 1, "{name}");
        let files = maintenance::live_files(&table).await.expect("files");
        assert_eq!(files.len(), 1, "{name}");
        let keep = maintenance::referenced_files(&table, table_io::now_ms())
            .await
            .expect("referenced");
        let listed: Vec<_> = object_store::ObjectStore::list(
            &machine.store,
            Some(&object_store::path::Path::from(
                table
                    .metadata()
                    .location()
                    .trim_start_matches("memory:///")
                    .to_string(),
            )),
        )
        .collect()
        .await;
        assert_eq!(
            listed.len(),
            keep.len(),
            "{name}: files nothing references remain"
        );
    }
    catalog.shutdown().await;
    machine.reboot(0).await;
    assert_eq!(check_recovered(&machine, &acked).await, Ok(COMMITS));

    let step = total.div_ceil(CRASH_POINTS_MAX).max(1);
    let points: Vec<u64> = (0..=total).step_by(step as usize).collect();
    let results: Vec<(u64, Result<bool, String>)> = futures::stream::iter(points.clone())
        .map(|k| async move { (k, run_crash_point(k).await) })
        .buffer_unordered(PARALLEL_RUNS)
        .collect()
        .await;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(k, result)| {
            result
                .as_ref()
                .err()
                .map(|e| format!("crash point {k}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let crashed = results
        .iter()
        .filter(|(_, result)| matches!(result, Ok(true)))
        .count();
    assert!(
        crashed >= 50,
        "only {crashed} of {} runs failed the power ({total} operations)",
        points.len()
    );
    eprintln!(
        "{} crash points over {total} operations, {crashed} power failures",
        points.len()
    );
}
