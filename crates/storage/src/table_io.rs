//! Reading a table snapshot as Arrow, writing data files, and producing new snapshots.
//!
//! iceberg 0.10 offers only `fast_append` as a snapshot-producing transaction; UPDATE and
//! DELETE need to drop files as well. So snapshots are produced here directly with iceberg's
//! public manifest writers (copy-on-write: a changed data file is rewritten without the
//! deleted rows and the old file is marked deleted in the new manifest), and returned as
//! requirements + updates for the catalog to commit atomically with other tables.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, FormatVersion, MAIN_BRANCH, ManifestListWriter,
    ManifestWriterBuilder, Operation, Snapshot, SnapshotReference, SnapshotRetention, Summary,
};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Error, ErrorKind, Result, TableRequirement, TableUpdate};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use uuid::Uuid;

/// Rows read per Arrow batch when scanning a data file.
pub const SCAN_BATCH_ROWS: usize = 8192;

/// One data file of a snapshot with its rows.
#[derive(Debug, Clone)]
pub struct FileRows {
    pub path: String,
    pub batches: Vec<RecordBatch>,
}

impl FileRows {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// The contents of one table snapshot, file by file, in the table's current Arrow schema.
#[derive(Debug, Clone)]
pub struct SnapshotData {
    pub snapshot_id: Option<i64>,
    pub schema: ArrowSchemaRef,
    pub files: Vec<FileRows>,
}

impl SnapshotData {
    pub fn num_rows(&self) -> usize {
        self.files.iter().map(|f| f.num_rows()).sum()
    }

    pub fn batches(&self) -> impl Iterator<Item = &RecordBatch> {
        self.files.iter().flat_map(|f| f.batches.iter())
    }
}

/// The Arrow schema of the table's current schema, with iceberg field ids in the metadata.
pub fn arrow_schema(table: &Table) -> Result<ArrowSchemaRef> {
    Ok(Arc::new(schema_to_arrow_schema(
        table.metadata().current_schema(),
    )?))
}

/// Plans the data files of snapshot `snapshot_id` that `predicate` may match, each task reading
/// `columns` (None: every top-level column, the hidden row id included).
///
/// Columns are resolved to field ids here rather than by iceberg-rust's scan builder, which
/// takes some legal column names (`pos`, `file_path`, `_file`, `_pos`, `_row_id`, ...) for its
/// metadata columns: a user column so named would read as a reserved field the table lacks
/// ("field not found") or, for `_file`, as the data file's path (apache/iceberg-rust#2837).
pub async fn plan_tasks(
    table: &Table,
    snapshot_id: i64,
    columns: Option<&[String]>,
    predicate: Option<iceberg::expr::Predicate>,
) -> Result<Vec<iceberg::scan::FileScanTask>> {
    let schema = table
        .metadata()
        .snapshot_by_id(snapshot_id)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!(
                    "table {} has no snapshot {snapshot_id}",
                    table.identifier().name()
                ),
            )
        })?
        .schema(table.metadata())?;
    let field_ids = match columns {
        None => schema.as_struct().fields().iter().map(|f| f.id).collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                let field = schema.as_struct().field_by_name(name).ok_or_else(|| {
                    Error::new(
                        ErrorKind::DataInvalid,
                        format!(
                            "table {} has no column {name} at snapshot {snapshot_id}",
                            table.identifier().name()
                        ),
                    )
                })?;
                Ok(field.id)
            })
            .collect::<Result<Vec<i32>>>()?,
    };
    let mut scan = table.scan().snapshot_id(snapshot_id).select_empty();
    if let Some(predicate) = predicate {
        scan = scan.with_filter(predicate);
    }
    let mut tasks: Vec<iceberg::scan::FileScanTask> =
        scan.build()?.plan_files().await?.try_collect().await?;
    for task in &mut tasks {
        task.project_field_ids = field_ids.clone();
    }
    Ok(tasks)
}

/// Reads every live data file of `snapshot_id` (or the current snapshot), projected onto the
/// table's current schema (columns added later read as null).
pub async fn read_snapshot(table: &Table, snapshot_id: Option<i64>) -> Result<SnapshotData> {
    let schema = arrow_schema(table)?;
    let snapshot_id = snapshot_id.or_else(|| table.metadata().current_snapshot_id());
    let Some(id) = snapshot_id else {
        return Ok(SnapshotData {
            snapshot_id: None,
            schema,
            files: vec![],
        });
    };
    // Refuses a snapshot the table lacks.
    let tasks = plan_tasks(table, id, None, None).await?;
    let mut files = Vec::with_capacity(tasks.len());
    for task in tasks {
        let path = task.data_file_path.clone();
        let batches = read_task(table, task).await?;
        // The reader yields the snapshot's schema; present the current one (same field ids).
        let batches = batches
            .into_iter()
            .map(|b| conform_batch(&b, &schema))
            .collect::<Result<Vec<_>>>()?;
        files.push(FileRows { path, batches });
    }
    Ok(SnapshotData {
        snapshot_id,
        schema,
        files,
    })
}

/// Casts `batch` column by column (matched by name) onto `schema`; missing columns are null.
pub fn conform_batch(batch: &RecordBatch, schema: &ArrowSchemaRef) -> Result<RecordBatch> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.schema().index_of(field.name()) {
            Ok(i) => {
                let column = batch.column(i);
                if column.data_type() == field.data_type() {
                    column.clone()
                } else if column.data_type().equals_datatype(field.data_type()) {
                    // Same layout, different nested field names/metadata (field ids).
                    retag(column, field.data_type())?
                } else {
                    let cast =
                        cast_with_options(column, field.data_type(), &options).map_err(|e| {
                            Error::new(
                                ErrorKind::DataInvalid,
                                format!(
                                    "column '{}': cannot convert {} to {}",
                                    field.name(),
                                    column.data_type(),
                                    field.data_type()
                                ),
                            )
                            .with_source(e)
                        })?;
                    // Casts build nested fields of their own; put the table's back.
                    if cast.data_type() == field.data_type() {
                        cast
                    } else {
                        retag(&cast, field.data_type())?
                    }
                }
            }
            Err(_) => arrow::array::new_null_array(field.data_type(), batch.num_rows()),
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!("column '{}' must not be null", field.name()),
            ));
        }
        columns.push(column);
    }
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::DataInvalid,
            "batch does not fit the table schema",
        )
        .with_source(e)
    })
}

/// Gives `array` the data type `to`, which must have the same physical layout: the nested
/// fields' names and metadata (field ids) change, at every depth.
fn retag(
    array: &arrow::array::ArrayRef,
    to: &arrow::datatypes::DataType,
) -> Result<arrow::array::ArrayRef> {
    let data = retag_data(array.to_data(), to).map_err(|e| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("cannot store {} as {to}", array.data_type()),
        )
        .with_source(e)
    })?;
    Ok(arrow::array::make_array(data))
}

fn retag_data(
    data: arrow::array::ArrayData,
    to: &arrow::datatypes::DataType,
) -> std::result::Result<arrow::array::ArrayData, arrow::error::ArrowError> {
    use arrow::datatypes::DataType;
    let children = match to {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => match data.child_data() {
            [child] => vec![retag_data(child.clone(), f.data_type())?],
            other => other.to_vec(),
        },
        DataType::Struct(fields) if fields.len() == data.child_data().len() => data
            .child_data()
            .iter()
            .zip(fields)
            .map(|(c, f)| retag_data(c.clone(), f.data_type()))
            .collect::<std::result::Result<_, _>>()?,
        _ => data.child_data().to_vec(),
    };
    data.into_builder()
        .data_type(to.clone())
        .child_data(children)
        .build()
}

/// Writes `batches` as new Parquet data files of `table` (not yet committed).
pub async fn write_data_files(table: &Table, batches: &[RecordBatch]) -> Result<Vec<DataFile>> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(vec![]);
    }
    let schema = arrow_schema(table)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let parquet = ParquetWriterBuilder::new(props, table.metadata().current_schema().clone());
    let location = DefaultLocationGenerator::new(table.metadata())?;
    let names =
        DefaultFileNameGenerator::new(Uuid::new_v4().to_string(), None, DataFileFormat::Parquet);
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        parquet,
        table.file_io().clone(),
        location,
        names,
    );
    let mut writer = DataFileWriterBuilder::new(rolling).build(None).await?;
    for batch in batches {
        if batch.num_rows() > 0 {
            writer.write(conform_batch(batch, &schema)?).await?;
        }
    }
    writer.close().await
}

/// Iceberg's snapshot summary field for the rows a snapshot holds.
pub const TOTAL_RECORDS: &str = "total-records";

/// A count a snapshot's summary records under `key` (None when the writer did not).
pub fn summary_count(snapshot: &iceberg::spec::Snapshot, key: &str) -> Option<u64> {
    snapshot
        .summary()
        .additional_properties
        .get(key)?
        .parse()
        .ok()
}

/// The rows of a table snapshot, from its summary (None when the writer did not record it).
pub fn snapshot_rows(table: &Table, snapshot_id: Option<i64>) -> Option<u64> {
    match snapshot_id {
        None => Some(0),
        Some(id) => summary_count(table.metadata().snapshot_by_id(id)?, TOTAL_RECORDS),
    }
}

/// The hidden column holding each row's stable id. Every table has it (required, `long`);
/// users never see it, and names starting with `__` are refused, so it cannot clash.
pub const ROW_ID: &str = "__id";
/// Table property: the table's number, unique in the database and never reused; the high
/// bits of its row ids.
pub const PROP_TABLE_NUMBER: &str = "contextdb.table-number";
/// Table property: the sequence number the table's next inserted row gets.
pub const PROP_NEXT_ROW: &str = "contextdb.next-row";
/// Bits of a row id that number rows within their table (the rest is the table number).
pub const ROW_SEQUENCE_BITS: u32 = 40;
/// The most tables a database numbers: row ids stay positive `i64`s.
pub const MAX_TABLE_NUMBER: u64 = (1 << (63 - ROW_SEQUENCE_BITS)) - 1;

/// Hands out row ids for rows a commit inserts into one table.
///
/// A row id is `table number << 40 | sequence`. The sequence only grows: the table's
/// `contextdb.next-row` property is moved past every id handed out in the same commit that
/// writes the rows, so no id is given twice, even to a row of a failed or later-deleted
/// insert. Copy-on-write rewrites and compaction copy the column, so an id stays with its row.
#[derive(Debug, Clone)]
pub struct RowIds {
    table_number: u64,
    next: u64,
    start: u64,
}

impl RowIds {
    /// The allocator of `table`'s next ids, from its properties.
    pub fn of(table: &Table) -> Result<RowIds> {
        let props = table.metadata().properties();
        let name = table.identifier().name();
        let number = props
            .get(PROP_TABLE_NUMBER)
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n <= MAX_TABLE_NUMBER)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::DataInvalid,
                    format!(
                        "table {name} has no row ids (it was written before tables had row ids); \
                         export it and load it into a new table"
                    ),
                )
            })?;
        let next = match props.get(PROP_NEXT_ROW) {
            None => 0,
            Some(n) => n.parse::<u64>().map_err(|_| {
                Error::new(
                    ErrorKind::DataInvalid,
                    format!("table {name}: property {PROP_NEXT_ROW} is not a number: {n}"),
                )
            })?,
        };
        Ok(RowIds {
            table_number: number,
            next,
            start: next,
        })
    }

    /// The id the `k`-th row handed out from now gets (without handing it out).
    pub fn peek(&self, k: u64) -> i64 {
        ((self.table_number << ROW_SEQUENCE_BITS) | (self.next + k)) as i64
    }

    /// Ids for `n` new rows.
    pub fn take(&mut self, n: usize) -> Result<arrow::array::Int64Array> {
        let end = self.next + n as u64;
        if end > 1 << ROW_SEQUENCE_BITS {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!(
                    "a table numbers at most 2^{ROW_SEQUENCE_BITS} inserted rows over its life"
                ),
            ));
        }
        let ids = arrow::array::Int64Array::from_iter_values((0..n as u64).map(|k| self.peek(k)));
        self.next = end;
        Ok(ids)
    }

    /// The `contextdb.next-row` value to commit, if any id was handed out.
    pub fn advanced(&self) -> Option<u64> {
        (self.next != self.start).then_some(self.next)
    }
}

/// `batch` with its rows' ids as the [`ROW_ID`] column (replacing one it has).
pub fn with_row_ids(batch: &RecordBatch, ids: arrow::array::ArrayRef) -> Result<RecordBatch> {
    use arrow::datatypes::{DataType, Field};
    let mut fields: Vec<arrow::datatypes::FieldRef> = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.name() != ROW_ID {
            fields.push(f.clone());
            columns.push(c.clone());
        }
    }
    fields.push(Arc::new(Field::new(ROW_ID, DataType::Int64, false)));
    columns.push(ids);
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns).map_err(|e| {
        Error::new(ErrorKind::Unexpected, "row ids do not fit the rows").with_source(e)
    })
}

/// A live data file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// The live data files of `snapshot_id`, in manifest order: every snapshot this crate
/// produces keeps the files of the one before in their order and adds new ones after them
/// (a scan plans files in no fixed order).
pub async fn data_files(table: &Table, snapshot_id: i64) -> Result<Vec<LiveFile>> {
    let Some(snapshot) = table.metadata().snapshot_by_id(snapshot_id) else {
        return Ok(vec![]);
    };
    let list = table.manifest_list_reader(snapshot).load().await?;
    let mut files = Vec::new();
    for manifest_file in list.entries() {
        let manifest = manifest_file.load_manifest(table.file_io()).await?;
        for entry in manifest.entries() {
            if entry.is_alive() && entry.data_file().content_type() == DataContentType::Data {
                files.push(LiveFile {
                    path: entry.file_path().to_string(),
                    rows: entry.data_file().record_count(),
                    bytes: entry.data_file().file_size_in_bytes(),
                });
            }
        }
    }
    Ok(files)
}

/// Reads one planned data file as Arrow, in the schema the file was written with.
pub async fn read_task(
    table: &Table,
    task: iceberg::scan::FileScanTask,
) -> Result<Vec<RecordBatch>> {
    let reader = table
        .reader_builder()
        .with_batch_size(SCAN_BATCH_ROWS)
        .build();
    reader
        .read(futures::stream::iter([Ok(task)]).boxed())?
        .stream()
        .try_collect()
        .await
}

/// Iceberg's snapshot summary field for the data files a snapshot holds.
pub const TOTAL_DATA_FILES: &str = "total-data-files";

/// The data files of a table snapshot, from its summary (None when the writer did not
/// record it).
pub fn snapshot_files(table: &Table, snapshot_id: Option<i64>) -> Option<u64> {
    match snapshot_id {
        None => Some(0),
        Some(id) => summary_count(table.metadata().snapshot_by_id(id)?, TOTAL_DATA_FILES),
    }
}

/// Iceberg's snapshot summary field for the bytes of the data files a snapshot holds.
pub const TOTAL_FILES_SIZE: &str = "total-files-size";

/// The bytes of a table snapshot's data files, from its summary (None when the writer did
/// not record it).
pub fn snapshot_bytes(table: &Table, snapshot_id: Option<i64>) -> Option<u64> {
    match snapshot_id {
        None => Some(0),
        Some(id) => summary_count(table.metadata().snapshot_by_id(id)?, TOTAL_FILES_SIZE),
    }
}

/// What one statement changes in one table's data.
#[derive(Debug, Default)]
pub struct DataChange {
    /// New data files (already written).
    pub added: Vec<DataFile>,
    /// Paths of live data files that the new snapshot no longer contains.
    pub removed: HashSet<String>,
    /// The table's next row sequence after the rows this change inserts (see [`RowIds`]).
    pub next_row: Option<u64>,
    /// The change only moves rows between files (compaction): the same rows before and after.
    pub rewrite: bool,
    /// Live data files rewritten in place: each new file holds the old one's rows, in the
    /// same order and with the same ids (some values changed), and takes its place in the
    /// manifest, so every row keeps its position in the table and what was built over the
    /// positions (key indexes, adjacency) still holds.
    pub replaced: Vec<(String, DataFile)>,
}

impl DataChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.replaced.is_empty()
    }
}

/// Builds a new snapshot of `table` from its current one plus `change` and returns the
/// catalog requirements (the table and its main branch are unchanged since we read them)
/// and updates (add the snapshot, move main to it). Manifests are written now; nothing is
/// visible until the catalog commits the updates.
///
/// `commit_ms` is the commit's timestamp, shared by every table the commit changes (see
/// [`commit_timestamp_ms`]) so that time travel never shows half a commit; it must be later
/// than anything the table recorded.
pub async fn produce_snapshot(
    table: &Table,
    change: DataChange,
    commit_ms: i64,
) -> Result<(Vec<TableRequirement>, Vec<TableUpdate>)> {
    let metadata = table.metadata();
    if commit_ms <= metadata.last_updated_ms() {
        return Err(Error::new(
            ErrorKind::Unexpected,
            format!(
                "commit timestamp {commit_ms} is not after the table's last update {}",
                metadata.last_updated_ms()
            ),
        ));
    }
    if metadata.format_version() != FormatVersion::V2 {
        return Err(Error::new(
            ErrorKind::FeatureUnsupported,
            "only format-version 2 tables can be written",
        ));
    }
    let snapshot_id = new_snapshot_id(table);
    let sequence_number = metadata.next_sequence_number();
    let commit = Uuid::new_v4();
    let meta_dir = format!("{}/metadata", metadata.location());

    let manifest_path = format!("{meta_dir}/{commit}-m0.avro");
    let mut writer = ManifestWriterBuilder::new(
        table.file_io().new_output(&manifest_path)?,
        Some(snapshot_id),
        metadata.current_schema().clone(),
        metadata.default_partition_spec().as_ref().clone(),
    )
    .build_v2_data();

    let mut removed_found = HashSet::new();
    let mut replaced: HashMap<&str, &DataFile> = change
        .replaced
        .iter()
        .map(|(old, new)| (old.as_str(), new))
        .collect();
    let (mut added_rows, mut deleted_rows, mut total_rows) = (0u64, 0u64, 0u64);
    let (mut total_files, mut total_bytes) = (0u64, 0u64);
    if let Some(current) = metadata.current_snapshot() {
        let list = table.manifest_list_reader(current).load().await?;
        for manifest_file in list.entries() {
            let manifest = manifest_file.load_manifest(table.file_io()).await?;
            for entry in manifest.entries() {
                if !entry.is_alive() {
                    continue;
                }
                if entry.data_file().content_type() != DataContentType::Data {
                    return Err(Error::new(
                        ErrorKind::FeatureUnsupported,
                        "tables with delete files are not supported yet",
                    ));
                }
                let path = entry.file_path().to_string();
                let seq = entry.sequence_number().unwrap_or(0);
                let file_seq = entry.file_sequence_number.or(Some(seq));
                let entry_snapshot = entry.snapshot_id().unwrap_or(snapshot_id);
                if let Some(new) = replaced.remove(path.as_str()) {
                    let rows = entry.data_file().record_count();
                    if new.record_count() != rows {
                        return Err(Error::new(
                            ErrorKind::Unexpected,
                            format!(
                                "{path} rewritten in place with {} rows instead of {rows}",
                                new.record_count()
                            ),
                        ));
                    }
                    writer.add_delete_file(entry.data_file().clone(), seq, file_seq)?;
                    // The new file where the old one was: positions stay.
                    total_bytes += new.file_size_in_bytes();
                    writer.add_file(new.clone(), sequence_number)?;
                    deleted_rows += rows;
                    added_rows += rows;
                    total_rows += rows;
                    total_files += 1;
                } else if change.removed.contains(&path) {
                    deleted_rows += entry.data_file().record_count();
                    writer.add_delete_file(entry.data_file().clone(), seq, file_seq)?;
                    removed_found.insert(path);
                } else {
                    total_rows += entry.data_file().record_count();
                    total_files += 1;
                    total_bytes += entry.data_file().file_size_in_bytes();
                    writer.add_existing_file(
                        entry.data_file().clone(),
                        entry_snapshot,
                        seq,
                        file_seq,
                    )?;
                }
            }
        }
    }
    if removed_found.len() != change.removed.len() || !replaced.is_empty() {
        // The files we meant to replace are gone: someone else rewrote the table.
        return Err(Error::new(
            ErrorKind::CatalogCommitConflicts,
            "data files to replace are no longer in the current snapshot",
        )
        .with_retryable(true));
    }
    let next_row = change.next_row;
    let change_rewrite = change.rewrite;
    for file in change.added {
        added_rows += file.record_count();
        total_rows += file.record_count();
        total_files += 1;
        total_bytes += file.file_size_in_bytes();
        writer.add_file(file, sequence_number)?;
    }
    let manifest = writer.write_manifest_file().await?;

    let list_path = format!("{meta_dir}/snap-{snapshot_id}-0-{commit}.avro");
    let mut list = ManifestListWriter::v2(
        table.file_io().new_output(&list_path)?.writer().await?,
        snapshot_id,
        metadata.current_snapshot_id(),
        sequence_number,
    );
    list.add_manifests(std::iter::once(manifest))?;
    list.close().await?;

    if change_rewrite && added_rows != deleted_rows {
        return Err(Error::new(
            ErrorKind::Unexpected,
            format!("a rewrite adds {added_rows} rows but removes {deleted_rows}"),
        ));
    }
    let operation = match (added_rows > 0, deleted_rows > 0) {
        _ if change_rewrite => Operation::Replace,
        (_, false) => Operation::Append,
        (false, true) => Operation::Delete,
        (true, true) => Operation::Overwrite,
    };
    let summary = Summary {
        operation,
        additional_properties: HashMap::from([
            ("added-records".to_string(), added_rows.to_string()),
            ("deleted-records".to_string(), deleted_rows.to_string()),
            // Readers number rows without opening data files (see `snapshot_rows`).
            (TOTAL_RECORDS.to_string(), total_rows.to_string()),
            (TOTAL_DATA_FILES.to_string(), total_files.to_string()),
            // Readers size a snapshot without listing its files (see `snapshot_bytes`).
            (TOTAL_FILES_SIZE.to_string(), total_bytes.to_string()),
        ]),
    };
    let snapshot = Snapshot::builder()
        .with_manifest_list(list_path)
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(metadata.current_snapshot_id())
        .with_sequence_number(sequence_number)
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .with_timestamp_ms(commit_ms)
        .build();
    let requirements = vec![
        TableRequirement::UuidMatch {
            uuid: metadata.uuid(),
        },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: metadata.current_snapshot_id(),
        },
    ];
    let mut updates = vec![
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef {
            ref_name: MAIN_BRANCH.to_string(),
            reference: SnapshotReference::new(
                snapshot_id,
                SnapshotRetention::branch(None, None, None),
            ),
        },
    ];
    // Row ids handed out for this commit's rows are used up with it (the main-branch
    // requirement above keeps two writers from handing out the same ones).
    if let Some(next) = next_row {
        updates.push(TableUpdate::SetProperties {
            updates: HashMap::from([(PROP_NEXT_ROW.to_string(), next.to_string())]),
        });
    }
    Ok((requirements, updates))
}

/// Milliseconds since the Unix epoch, as snapshot timestamps count them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The timestamp of a commit over a catalog version holding `tables` (every table, not only
/// those it changes): now, or just after the latest update of any table if the clock is
/// behind. Commits are serialised, so commit timestamps strictly increase across the whole
/// graph, and "as of time t" is a set of whole commits.
pub fn commit_timestamp_ms<'a>(tables: impl IntoIterator<Item = &'a Table>) -> i64 {
    let now = now_ms();
    let last = tables
        .into_iter()
        .map(|t| t.metadata().last_updated_ms())
        .max()
        .unwrap_or(0);
    now.max(last + 1)
}

fn new_snapshot_id(table: &Table) -> i64 {
    loop {
        let (a, b) = Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) >> 1) as i64;
        if id != 0 && table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// The snapshot that was current at `timestamp_ms` (the last one committed at or before it).
pub fn snapshot_at(table: &Table, timestamp_ms: i64) -> Option<i64> {
    table
        .metadata()
        .history()
        .iter()
        .filter(|log| log.timestamp_ms <= timestamp_ms)
        .max_by_key(|log| log.timestamp_ms)
        .map(|log| log.snapshot_id)
}

/// An Arrow schema without field-id metadata (what users and DataFusion see).
pub fn plain_schema(schema: &ArrowSchema) -> ArrowSchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_metadata(HashMap::new()))
        .collect();
    Arc::new(ArrowSchema::new(fields))
}
