//! The write sink of ContextQL: turns the rows of a writing query into table changes and
//! commits them all at once (copy-on-write for updates and deletes).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, RecordBatch, StringArray,
    UInt32Array, new_null_array,
};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast, concat, concat_batches, filter_record_batch, interleave, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use contextdb_catalog::TableChange;
use contextdb_planner::nodes::{self, column_name};
use contextdb_planner::{MergeOp, Target, WriteOp};
use contextdb_storage::table_io::{self, DataChange, RowIds};

use crate::cache::{Key, TableData};
use crate::database::Database;
use crate::ddl::StagedSchema;
use crate::error::{Error, Result};
use crate::graph_source::Snapshot;
use crate::schema::TableKind;
use crate::staged::{ChangedTable, Staged};

/// Pending changes of one table.
#[derive(Default)]
pub(crate) struct TableEdits {
    pub appended: Vec<RecordBatch>,
    pub deleted: BTreeSet<u32>,
    /// ordinal → (column, value array, row in that array); later writes win.
    pub updates: BTreeMap<u32, Vec<(String, ArrayRef, usize)>>,
}

fn column<'a>(rows: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    rows.column_by_name(name)
        .ok_or_else(|| Error::internal(format!("write plan lacks column {name}")))
}

fn ords(array: &ArrayRef) -> Result<&UInt32Array> {
    array
        .as_any()
        .downcast_ref::<UInt32Array>()
        .ok_or_else(|| Error::internal("ordinal column is not UInt32"))
}

fn data<'a>(snapshot: &'a Snapshot, name: &str) -> Result<&'a Arc<TableData>> {
    snapshot
        .get(name)
        .ok_or_else(|| Error::plan(format!("table `{name}` does not exist")))
}

/// Builds `n` rows of `table` from (property, values) pairs; other columns take their
/// default, or null.
fn build_rows(
    table: &TableData,
    properties: &[(String, ArrayRef)],
    n: usize,
) -> Result<RecordBatch> {
    let schema = table.schema();
    for (p, _) in properties {
        if schema.index_of(p).is_err() {
            return Err(Error::plan(format!(
                "`{}` has no property `{p}` (adding properties by CREATE is not supported yet)",
                table.info.name
            )));
        }
    }
    let defaults = crate::schema::column_defaults(&table.table);
    let columns = schema
        .fields()
        .iter()
        .map(|f| match properties.iter().find(|(p, _)| p == f.name()) {
            Some((_, values)) => cast_to(values, f.data_type(), f.name()),
            None => match defaults.get(f.name()) {
                Some(value) => cast_to(&value.to_array_of_size(n)?, f.data_type(), f.name()),
                None => Ok(new_null_array(f.data_type(), n)),
            },
        })
        .collect::<Result<Vec<_>>>()?;
    check_not_null(&schema, &columns, &table.info.name)?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The rows of `locals` below `stored` (rows of the table's snapshot), in order.
fn stored_among(locals: &[Option<u32>], stored: u32) -> Vec<u32> {
    locals
        .iter()
        .flatten()
        .copied()
        .filter(|l| *l < stored)
        .collect()
}

fn cast_to(values: &ArrayRef, to: &DataType, name: &str) -> Result<ArrayRef> {
    if values.data_type() == to {
        return Ok(values.clone());
    }
    // A null of any type is a null of every type (REMOVE, a null literal).
    if values.null_count() == values.len() {
        return Ok(new_null_array(to, values.len()));
    }
    cast(values, to).map_err(|e| {
        Error::execution(format!(
            "property `{name}`: cannot store {} as {to}: {e}",
            values.data_type()
        ))
    })
}

fn check_not_null(schema: &SchemaRef, columns: &[ArrayRef], table: &str) -> Result<()> {
    for (f, c) in schema.fields().iter().zip(columns) {
        if !f.is_nullable() && c.null_count() > 0 {
            return Err(Error::execution(format!(
                "`{table}.{}` must not be null",
                f.name()
            )));
        }
    }
    Ok(())
}

/// The columns of a write block's rows, which operations read and fill in (ordinals of
/// created elements) and which leave with every written value in place.
struct Rows {
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
}

impl Rows {
    fn get(&self, name: &str) -> Result<&ArrayRef> {
        let i = self
            .schema
            .index_of(name)
            .map_err(|_| Error::internal(format!("write plan lacks column {name}")))?;
        Ok(&self.columns[i])
    }

    fn set(&mut self, name: &str, values: ArrayRef) -> Result<()> {
        let i = self
            .schema
            .index_of(name)
            .map_err(|_| Error::internal(format!("write plan lacks column {name}")))?;
        self.columns[i] = values;
        Ok(())
    }

    /// Writes `values[k]` into row `sel[k]` of an ordinal column.
    fn set_ords(&mut self, name: &str, sel: &[u32], values: &[u32]) -> Result<()> {
        let mut all: Vec<Option<u32>> = ords(self.get(name)?)?.iter().collect();
        for (&row, &v) in sel.iter().zip(values) {
            all[row as usize] = Some(v);
        }
        self.set(name, Arc::new(UInt32Array::from(all)))
    }
}

/// Where a node or relationship is: its table and row (rows past the table's snapshot are
/// rows this statement appends).
type Location = (String, u32);

/// The write sink of one statement: applies the operations of its write blocks to pending
/// table edits, numbers what they create after every stored ordinal, and commits once.
pub(crate) struct Sink<'a> {
    snapshot: &'a Snapshot,
    /// The numbering the block's ordinals are in when it is not the snapshot's: the view of
    /// the statement's earlier writes that the block was planned against.
    view: Option<Arc<Staged>>,
    edits: HashMap<String, TableEdits>,
    /// Created nodes / relationships: ordinal `base + i` is at `created[i]`.
    node_base: u32,
    created_nodes: Vec<Location>,
    edge_base: u32,
    created_edges: Vec<Location>,
    next_key: HashMap<String, i64>,
    changes: u64,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot) -> Sink<'a> {
        Sink {
            snapshot,
            view: None,
            edits: HashMap::new(),
            node_base: snapshot.node_end,
            created_nodes: Vec::new(),
            edge_base: snapshot.edge_end,
            created_edges: Vec::new(),
            next_key: HashMap::new(),
            changes: 0,
        }
    }

    /// Applies one write block to its rows; returns the rows with created elements bound and
    /// every node and relationship showing its values after the writes.
    pub(crate) fn apply(
        &mut self,
        writes: &[WriteOp],
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<RecordBatch> {
        let batch = concat_batches(schema, batches)?;
        let all: Vec<u32> = (0..batch.num_rows() as u32).collect();
        let mut rows = Rows {
            schema: schema.clone(),
            columns: batch.columns().to_vec(),
        };
        for op in writes {
            self.apply_op(op, &mut rows, &all)?;
        }
        self.refresh(&mut rows)?;
        Ok(RecordBatch::try_new(rows.schema, rows.columns)?)
    }

    /// Commits every edit of the statement as one catalog entry; returns the change count.
    pub(crate) async fn commit(self, db: &Database, schema: StagedSchema) -> Result<u64> {
        commit_edits_creating(db, self.snapshot, &self.edits, schema).await?;
        Ok(self.changes)
    }

    /// Where the node (or, with `nodes` false, the edge) with this ordinal is.
    fn locate(&self, nodes: bool, ordinal: u32) -> Option<Location> {
        let (base, created) = if nodes {
            (self.node_base, &self.created_nodes)
        } else {
            (self.edge_base, &self.created_edges)
        };
        match ordinal.checked_sub(base) {
            Some(i) => created.get(i as usize).cloned(),
            None => match &self.view {
                Some(view) => view.locate(nodes, ordinal),
                None => self.located_in_snapshot(nodes, ordinal),
            },
        }
    }

    fn located_in_snapshot(&self, nodes: bool, ordinal: u32) -> Option<Location> {
        if nodes {
            self.snapshot
                .node_at(ordinal)
                .map(|(t, l)| (t.to_string(), l))
        } else {
            self.snapshot
                .edge_at(ordinal)
                .map(|(t, l)| (t.to_string(), l))
        }
    }

    /// The graph with the statement's writes so far applied, for the clauses after a write
    /// block to be planned against (see [`Staged`]).
    pub(crate) fn stage(&self, snapshot: Arc<Snapshot>) -> Result<Staged> {
        let mut changed = HashMap::new();
        for (name, edit) in &self.edits {
            if edit.appended.is_empty() && edit.deleted.is_empty() && edit.updates.is_empty() {
                continue;
            }
            let table = data(self.snapshot, name)?;
            let stored = table.rows.num_rows();
            let appended_rows = self.appended_rows(name);
            // The sink rows `range` keeps: all but the deleted.
            let kept = |range: std::ops::Range<u32>| -> Vec<u32> {
                range.filter(|r| !edit.deleted.contains(r)).collect()
            };
            let mut parts = Vec::new();
            for (start, chunk, chunk_ids) in table.rows.chunks() {
                let range = start as u32..(start + chunk.num_rows()) as u32;
                if edit.deleted.range(range.clone()).next().is_none()
                    && edit.updates.range(range.clone()).next().is_none()
                {
                    // Untouched: shared, not copied.
                    parts.push((chunk.clone(), chunk_ids.clone(), range.collect()));
                    continue;
                }
                let edited = edit_rows(
                    table_io::with_row_ids(chunk, chunk_ids.clone())?,
                    start,
                    edit,
                )?;
                let (rows, row_ids) = split_ids(&edited)?;
                parts.push((rows, row_ids, kept(range)));
            }
            // The appended rows as the commit will write them: its ids, its edits.
            let current = self
                .snapshot
                .current
                .get(name)
                .ok_or_else(|| Error::internal(format!("no metadata for `{name}`")))?;
            let mut next_ids = RowIds::of(current)?;
            let edited = appended(table, edit, &mut next_ids)?;
            if let Some(first) = edited.first() {
                let (rows, row_ids) = split_ids(&concat_batches(&first.schema(), &edited)?)?;
                let range = stored as u32..(stored + appended_rows) as u32;
                parts.push((rows, row_ids, kept(range)));
            }
            let mut chunks = Vec::with_capacity(parts.len());
            let mut ids = Vec::with_capacity(parts.len());
            let mut sink_rows = Vec::new();
            for (chunk, chunk_ids, rows) in parts {
                chunks.push(chunk);
                ids.push(chunk_ids);
                sink_rows.extend(rows);
            }
            let rows = contextdb_planner::source::Chunked::try_new(table.schema(), chunks, ids)?;
            changed.insert(
                name.clone(),
                ChangedTable::new(rows, sink_rows, stored + appended_rows),
            );
        }
        Staged::new(snapshot, changed)
    }

    /// `rows` (a block's output, its ordinals in the sink's numbering) with every ordinal in
    /// `view`'s numbering, where later blocks number theirs from now on. An element the
    /// statement deleted is null.
    pub(crate) fn renumber(&mut self, rows: RecordBatch, view: Arc<Staged>) -> Result<RecordBatch> {
        let schema = rows.schema();
        let mut columns = rows.columns().to_vec();
        let mut fields = schema.fields().to_vec();
        for (i, field) in schema.fields().iter().enumerate() {
            let Some(nodes) = nodes::ordinal_column(&schema, field.name()) else {
                continue;
            };
            fields[i] = Arc::new(nodes::renumbered_field(field));
            let map = |o: Option<u32>| {
                o.and_then(|o| self.locate(nodes, o))
                    .and_then(|(table, row)| view.ordinal(nodes, &table, row))
            };
            columns[i] = match field.data_type() {
                DataType::UInt32 => {
                    Arc::new(ords(&columns[i])?.iter().map(map).collect::<UInt32Array>())
                }
                DataType::List(item) => {
                    let list = columns[i].as_list::<i32>();
                    let values = ords(list.values())?
                        .iter()
                        .map(map)
                        .collect::<UInt32Array>();
                    Arc::new(ListArray::try_new(
                        Arc::new(item.as_ref().clone().with_nullable(true)),
                        list.offsets().clone(),
                        Arc::new(values),
                        list.nulls().cloned(),
                    )?)
                }
                _ => continue,
            };
        }
        self.node_base = view.node_end;
        self.edge_base = view.edge_end;
        self.created_nodes.clear();
        self.created_edges.clear();
        self.view = Some(view);
        let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            fields,
            schema.metadata().clone(),
        ));
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Rows of `table` this statement appended so far.
    fn appended_rows(&self, table: &str) -> usize {
        self.edits
            .get(table)
            .map_or(0, |e| e.appended.iter().map(|b| b.num_rows()).sum())
    }

    /// Values of `column` of `table` at `locals` (stored or appended rows, with this
    /// statement's updates), as `to`; null where `locals` is None or the table lacks it.
    fn table_values(
        &self,
        table: &str,
        column: &str,
        locals: &[Option<u32>],
        to: &DataType,
    ) -> Result<ArrayRef> {
        let data = data(self.snapshot, table)?;
        let stored = data.rows.num_rows() as u32;
        let nulls = new_null_array(to, 1);
        let edit = self.edits.get(table);
        // Stored values are gathered for the stored rows asked for, in the order asked.
        let stored_rows = stored_among(locals, stored);
        let mut sources: Vec<ArrayRef> = vec![nulls.clone(), nulls.clone()];
        let has_stored = match data.rows.take(column, &stored_rows)? {
            Some(values) if column != nodes::ID => {
                sources[0] = cast_to(&values, to, column)?;
                true
            }
            _ => false,
        };
        if let Some(e) = edit
            && !e.appended.is_empty()
            && let Ok(i) = e.appended[0].schema().index_of(column)
        {
            let parts: Vec<&dyn Array> = e.appended.iter().map(|b| b.column(i).as_ref()).collect();
            sources[1] = cast_to(&concat(&parts)?, to, column)?;
        }
        let null_source = sources.len();
        sources.push(nulls);
        let mut next_stored = 0;
        let mut indices: Vec<(usize, usize)> = locals
            .iter()
            .map(|l| match l {
                Some(l) if *l < stored => {
                    next_stored += 1;
                    if has_stored {
                        (0, next_stored - 1)
                    } else {
                        (null_source, 0)
                    }
                }
                Some(l) if sources[1].len() > (l - stored) as usize => (1, (l - stored) as usize),
                _ => (null_source, 0),
            })
            .collect();
        // This statement's updates win over stored and appended values.
        if let Some(e) = edit {
            for (row, local) in locals.iter().enumerate() {
                let Some(sets) = local.and_then(|l| e.updates.get(&l)) else {
                    continue;
                };
                if let Some((_, values, at)) = sets.iter().rev().find(|(c, ..)| c == column) {
                    sources.push(cast_to(&values.slice(*at, 1), to, column)?);
                    indices[row] = (sources.len() - 1, 0);
                }
            }
        }
        let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
        Ok(interleave(&refs, &indices)?)
    }

    /// The stable ids of `table`'s rows at `locals`: stored ids, or for appended rows the
    /// ids the commit will give them (the `k`-th appended row gets the table's `k`-th next).
    fn table_ids(&self, table: &str, locals: &[Option<u32>]) -> Result<ArrayRef> {
        let data = data(self.snapshot, table)?;
        let stored = data.rows.num_rows() as u32;
        let current = self
            .snapshot
            .current
            .get(table)
            .ok_or_else(|| Error::internal(format!("no metadata for `{table}`")))?;
        let next = RowIds::of(current)?;
        let stored_rows = stored_among(locals, stored);
        let stored_ids = data
            .rows
            .take(nodes::ID, &stored_rows)?
            .ok_or_else(|| Error::internal("rows without ids"))?;
        let stored_ids = stored_ids
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| Error::internal("row ids are not Int64"))?;
        let mut next_stored = 0;
        Ok(Arc::new(Int64Array::from_iter(locals.iter().map(|l| {
            l.map(|l| {
                if l < stored {
                    next_stored += 1;
                    stored_ids.value(next_stored - 1)
                } else {
                    next.peek(u64::from(l - stored))
                }
            })
        }))))
    }

    fn apply_op(&mut self, op: &WriteOp, rows: &mut Rows, sel: &[u32]) -> Result<()> {
        match op {
            WriteOp::CreateNode {
                label,
                properties,
                ord_column,
            } => self.create_node(rows, sel, label, properties, ord_column),
            WriteOp::CreateEdge {
                rel_type,
                src,
                dst,
                properties,
                ord_column,
            } => self.create_edge(rows, sel, rel_type, (src, dst), properties, ord_column),
            WriteOp::SetProperty {
                target,
                property,
                column: value_column,
            } => self.set_property(rows, sel, target, property, value_column),
            WriteOp::Delete { target, detach } => self.delete(rows, sel, target, *detach),
            WriteOp::Merge(merge) => self.merge(rows, sel, merge),
        }
    }

    fn take_rows(values: &ArrayRef, sel: &[u32]) -> Result<ArrayRef> {
        Ok(take(
            values.as_ref(),
            &UInt32Array::from(sel.to_vec()),
            None,
        )?)
    }

    fn create_node(
        &mut self,
        rows: &mut Rows,
        sel: &[u32],
        label: &str,
        properties: &[(String, String)],
        ord_column: &str,
    ) -> Result<()> {
        let n = sel.len();
        if n == 0 {
            return Ok(());
        }
        let table = data(self.snapshot, label)?;
        let pk = table
            .info
            .primary_key
            .clone()
            .expect("node tables have keys");
        let mut props: Vec<(String, ArrayRef)> = properties
            .iter()
            .map(|(p, c)| Ok((p.clone(), Self::take_rows(rows.get(c)?, sel)?)))
            .collect::<Result<_>>()?;
        if !props.iter().any(|(p, _)| p == &pk) {
            let pk_type = table.schema().field_with_name(&pk)?.data_type().clone();
            if !matches!(pk_type, DataType::Int64 | DataType::Int32) {
                return Err(Error::execution(format!(
                    "CREATE (:{label}) needs its primary key `{pk}`"
                )));
            }
            // Integer keys not given are assigned after the largest key in use.
            let next = match self.next_key.get(label) {
                Some(&k) => k,
                None => max_int_key(table)? + 1,
            };
            let keys = Int64Array::from_iter_values(next..next + n as i64);
            self.next_key.insert(label.to_string(), next + n as i64);
            props.push((pk.clone(), Arc::new(keys)));
        }
        let batch = build_rows(table, &props, n)?;
        self.append(rows, sel, true, label, batch, ord_column)
    }

    /// Appends created rows to `table`, numbers them and writes their ordinals into
    /// `ord_column` at the rows `sel` that created them.
    fn append(
        &mut self,
        rows: &mut Rows,
        sel: &[u32],
        nodes: bool,
        table: &str,
        batch: RecordBatch,
        ord_column: &str,
    ) -> Result<()> {
        let n = batch.num_rows();
        debug_assert_eq!(n, sel.len(), "one created row per selected row");
        let stored = data(self.snapshot, table)?.rows.num_rows();
        let first = (stored + self.appended_rows(table)) as u32;
        let ordinals = self.number(nodes, table, first, n)?;
        rows.set_ords(ord_column, sel, &ordinals)?;
        self.edits
            .entry(table.to_string())
            .or_default()
            .appended
            .push(batch);
        self.changes += n as u64;
        Ok(())
    }

    /// Ordinals for `n` created rows of `table` starting at row `first`.
    fn number(&mut self, nodes: bool, table: &str, first: u32, n: usize) -> Result<Vec<u32>> {
        let (base, created) = if nodes {
            (self.node_base, &mut self.created_nodes)
        } else {
            (self.edge_base, &mut self.created_edges)
        };
        let start = base as u64 + created.len() as u64;
        if start + n as u64 > contextdb_planner::source::MAX_ORDINALS {
            return Err(Error::new(
                crate::ErrorKind::Resource,
                "one statement creates more elements than ordinals can number",
            ));
        }
        created.extend((0..n as u32).map(|k| (table.to_string(), first + k)));
        Ok((0..n as u32).map(|k| start as u32 + k).collect())
    }

    /// The primary keys of the nodes in ordinal column `column` at `sel`, which must all
    /// have `label`.
    fn endpoint_keys(
        &self,
        rows: &Rows,
        sel: &[u32],
        column: &str,
        label: &str,
        rel_type: &str,
    ) -> Result<ArrayRef> {
        let values = Self::take_rows(rows.get(column)?, sel)?;
        let mut locals = Vec::with_capacity(sel.len());
        for ordinal in ords(&values)?.iter() {
            let Some(ordinal) = ordinal else {
                return Err(Error::execution(format!(
                    "cannot create a {rel_type} relationship to a null node"
                )));
            };
            match self.locate(true, ordinal) {
                Some((l, local)) if l == label => locals.push(Some(local)),
                Some((l, _)) => {
                    return Err(Error::execution(format!(
                        "{rel_type} connects `{label}` nodes here, not `{l}` (an edge table has one FROM/TO pair)"
                    )));
                }
                None => return Err(Error::internal(format!("ordinal {ordinal} is in no table"))),
            }
        }
        let table = data(self.snapshot, label)?;
        let pk = table
            .info
            .primary_key
            .as_deref()
            .ok_or_else(|| Error::internal("node table without key"))?;
        let to = table.schema().field_with_name(pk)?.data_type().clone();
        self.table_values(label, pk, &locals, &to)
    }

    fn create_edge(
        &mut self,
        rows: &mut Rows,
        sel: &[u32],
        rel_type: &str,
        (src, dst): (&str, &str),
        properties: &[(String, String)],
        ord_column: &str,
    ) -> Result<()> {
        let n = sel.len();
        if n == 0 {
            return Ok(());
        }
        let table = data(self.snapshot, rel_type)?;
        let (from, to) = (
            table.info.from.clone().unwrap_or_default(),
            table.info.to.clone().unwrap_or_default(),
        );
        let s = self.endpoint_keys(rows, sel, src, &from, rel_type)?;
        let d = self.endpoint_keys(rows, sel, dst, &to, rel_type)?;
        let mut props: Vec<(String, ArrayRef)> = vec![("src".into(), s), ("dst".into(), d)];
        for (p, c) in properties {
            props.push((p.clone(), Self::take_rows(rows.get(c)?, sel)?));
        }
        let batch = build_rows(table, &props, n)?;
        self.append(rows, sel, false, rel_type, batch, ord_column)
    }

    /// (row, location) of every selected row whose target is bound.
    fn targets(&self, rows: &Rows, sel: &[u32], target: &Target) -> Result<Vec<(u32, Location)>> {
        let (column_name, nodes) = match target {
            Target::Node { ord_column } => (ord_column, true),
            Target::Rel { ord_column } => (ord_column, false),
        };
        let ords = ords(rows.get(column_name)?)?;
        let mut out = Vec::new();
        for &row in sel {
            if ords.is_null(row as usize) {
                continue;
            }
            let ordinal = ords.value(row as usize);
            let at = self.locate(nodes, ordinal);
            out.push((
                row,
                at.ok_or_else(|| Error::internal(format!("ordinal {ordinal} is in no table")))?,
            ));
        }
        Ok(out)
    }

    fn set_property(
        &mut self,
        rows: &Rows,
        sel: &[u32],
        target: &Target,
        property: &str,
        value_column: &str,
    ) -> Result<()> {
        let values = rows.get(value_column)?.clone();
        let mut cast_values: HashMap<String, Option<ArrayRef>> = HashMap::new();
        for (row, (name, local)) in self.targets(rows, sel, target)? {
            let values = match cast_values.get(&name) {
                Some(v) => v.clone(),
                None => {
                    let v = settable(data(self.snapshot, &name)?, property, &values)?;
                    cast_values.insert(name.clone(), v.clone());
                    v
                }
            };
            // Removing a property the table does not have changes nothing.
            let Some(values) = values else { continue };
            self.edits
                .entry(name)
                .or_default()
                .updates
                .entry(local)
                .or_default()
                .push((property.to_string(), values, row as usize));
            self.changes += 1;
        }
        Ok(())
    }

    fn delete(&mut self, rows: &Rows, sel: &[u32], target: &Target, detach: bool) -> Result<()> {
        let mut labels = BTreeSet::new();
        for (_, (name, local)) in self.targets(rows, sel, target)? {
            if local as usize >= data(self.snapshot, &name)?.rows.num_rows() {
                return Err(Error::execution(
                    "deleting what the same statement created is not supported yet",
                ));
            }
            if self
                .edits
                .entry(name.clone())
                .or_default()
                .deleted
                .insert(local)
            {
                self.changes += 1;
            }
            if matches!(target, Target::Node { .. }) {
                labels.insert(name);
            }
        }
        for label in labels {
            self.changes += delete_edges_of(self.snapshot, &label, &mut self.edits, detach)?;
        }
        Ok(())
    }

    fn merge(&mut self, rows: &mut Rows, sel: &[u32], merge: &MergeOp) -> Result<()> {
        let matched = ords(rows.get(&merge.matched)?)?.clone();
        let (hit, miss): (Vec<u32>, Vec<u32>) =
            sel.iter().partition(|&&r| matched.is_valid(r as usize));
        for (property, column) in &merge.properties {
            let values = rows.get(column)?;
            let null = |r: u32| values.data_type() == &DataType::Null || values.is_null(r as usize);
            if miss.iter().any(|&r| null(r)) {
                return Err(Error::execution(format!(
                    "cannot merge using a null value for property `{property}`"
                )));
            }
        }
        // Rows with equal keys merge the same pattern: the first creates it, the others
        // bind what it created.
        let keys: Vec<ArrayRef> = merge
            .key
            .iter()
            .map(|c| Self::take_rows(rows.get(c)?, &miss))
            .collect::<Result<_>>()?;
        let mut creators: Vec<u32> = Vec::new();
        let mut creator_of: Vec<u32> = Vec::with_capacity(miss.len());
        if keys.is_empty() {
            creators.extend(miss.first());
            creator_of.extend(miss.iter().map(|_| miss[0]));
        } else {
            let fields = keys
                .iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect();
            let converter = RowConverter::new(fields)?;
            let converted = converter.convert_columns(&keys)?;
            let mut first: HashMap<Vec<u8>, u32> = HashMap::new();
            for (k, &row) in miss.iter().enumerate() {
                let creator = *first
                    .entry(converted.row(k).as_ref().to_vec())
                    .or_insert_with(|| {
                        creators.push(row);
                        row
                    });
                creator_of.push(creator);
            }
        }
        for op in &merge.create {
            self.apply_op(op, rows, &creators)?;
        }
        for op in &merge.create {
            let (WriteOp::CreateNode { ord_column, .. } | WriteOp::CreateEdge { ord_column, .. }) =
                op
            else {
                return Err(Error::internal(
                    "MERGE creates nodes and relationships only",
                ));
            };
            let created = ords(rows.get(ord_column)?)?.clone();
            let spread: Vec<u32> = creator_of
                .iter()
                .map(|&c| created.value(c as usize))
                .collect();
            rows.set_ords(ord_column, &miss, &spread)?;
        }
        for op in &merge.on_create {
            self.apply_op(op, rows, &miss)?;
        }
        for op in &merge.on_match {
            self.apply_op(op, rows, &hit)?;
        }
        Ok(())
    }

    /// Re-reads the columns of every node and relationship variable whose element changed,
    /// so clauses after the block see created elements and written values.
    fn refresh(&mut self, rows: &mut Rows) -> Result<()> {
        // Every column read below reads a table's appended rows: join them once, not per read.
        for edit in self.edits.values_mut() {
            if edit.appended.len() > 1 {
                let schema = edit.appended[0].schema();
                edit.appended = vec![concat_batches(&schema, &edit.appended)?];
            }
        }
        let schema = rows.schema.clone();
        for field in schema.fields() {
            let Some(var) = field.name().strip_suffix(&format!(".{}", nodes::ORD)) else {
                continue;
            };
            let nodes = if schema.index_of(&column_name(var, nodes::LABEL)).is_ok() {
                true
            } else if schema.index_of(&column_name(var, nodes::TYPE)).is_ok() {
                false
            } else {
                continue;
            };
            let ordinals = ords(rows.get(field.name())?)?.clone();
            let located: Vec<Option<Location>> = ordinals
                .iter()
                .map(|o| o.and_then(|o| self.locate(nodes, o)))
                .collect();
            let mut tables: Vec<&str> = located.iter().flatten().map(|(t, _)| t.as_str()).collect();
            tables.sort_unstable();
            tables.dedup();
            if !tables.iter().any(|t| self.edits.contains_key(*t)) {
                continue;
            }
            let prefix = format!("{var}.");
            for f in schema.fields() {
                let Some(property) = f.name().strip_prefix(&prefix) else {
                    continue;
                };
                if property == nodes::ORD {
                    continue;
                }
                let mut sources: Vec<ArrayRef> = Vec::with_capacity(tables.len());
                for t in &tables {
                    let locals: Vec<Option<u32>> = located
                        .iter()
                        .map(|l| l.as_ref().filter(|(n, _)| n == t).map(|(_, r)| *r))
                        .collect();
                    sources.push(if property == nodes::ID {
                        self.table_ids(t, &locals)?
                    } else if property == nodes::LABEL || property == nodes::TYPE {
                        let info = &data(self.snapshot, t)?.info;
                        let name = info.rel_type.as_deref().unwrap_or(&info.name);
                        Arc::new(StringArray::from(vec![Some(name); located.len()]))
                    } else {
                        let column = if nodes {
                            property
                        } else {
                            nodes::rel_table_column(property)
                        };
                        self.table_values(t, column, &locals, f.data_type())?
                    });
                }
                let nulls = new_null_array(f.data_type(), 1);
                let null_source = sources.len();
                sources.push(nulls);
                let indices: Vec<(usize, usize)> = located
                    .iter()
                    .enumerate()
                    .map(|(row, l)| match l {
                        Some((t, _)) => (tables.iter().position(|x| x == t).expect("listed"), row),
                        None => (null_source, 0),
                    })
                    .collect();
                let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
                let values = cast_to(&interleave(&refs, &indices)?, f.data_type(), f.name())?;
                rows.set(f.name(), values)?;
            }
        }
        Ok(())
    }
}

/// Writes and commits the edits of several tables as one catalog entry.
pub(crate) async fn commit_edits(
    db: &Database,
    snapshot: &Snapshot,
    edits: &HashMap<String, TableEdits>,
) -> Result<()> {
    commit_edits_creating(db, snapshot, edits, StagedSchema::default()).await
}

/// [`commit_edits`] that also commits the statement's staged schema (tables it creates,
/// columns it adds; `snapshot` shows them) in the same catalog entry, before the data.
pub(crate) async fn commit_edits_creating(
    db: &Database,
    snapshot: &Snapshot,
    edits: &HashMap<String, TableEdits>,
    schema: StagedSchema,
) -> Result<()> {
    // Deleting a node that still has relationships needs DETACH (checked after all deletes,
    // so `DELETE r, n` in one statement works).
    check_dangling(snapshot, edits)?;
    // One timestamp for every table of the commit: time travel sees all of it or none.
    let commit_ms = table_io::commit_timestamp_ms(snapshot.current.values());
    let StagedSchema {
        created,
        changes: mut table_changes,
        ..
    } = schema;
    let mut names: Vec<&String> = edits.keys().collect();
    names.sort();
    for name in names {
        let edit = &edits[name];
        let table = data(snapshot, name)?;
        check_unique_keys(table, edit)?;
        let current = snapshot.current.get(name).expect("listed with its data");
        let stored = table.rows.num_rows() as u32;
        // Without deletes of stored rows, each rewritten file keeps its rows in order: it is
        // replaced in place, and every row keeps its position (see `DataChange::replaced`).
        let in_place = edit.deleted.range(..stored).next().is_none();
        let mut removed = HashSet::new();
        let mut replaced = Vec::new();
        let mut added = Vec::new();
        let mut new_batches: Vec<RecordBatch> = Vec::new();
        for (path, rows) in rewrite(table, edit)? {
            match rows {
                Some(rows) if in_place => {
                    let mut files = table_io::write_data_files(current, &[rows]).await?;
                    if files.len() == 1 {
                        replaced.push((path, files.remove(0)));
                    } else {
                        // Written as several files: added at the end instead.
                        removed.insert(path);
                        added.append(&mut files);
                    }
                }
                Some(rows) => {
                    removed.insert(path);
                    new_batches.push(rows);
                }
                None => {
                    removed.insert(path);
                }
            }
        }
        let mut row_ids = table_io::RowIds::of(current)?;
        new_batches.extend(appended(table, edit, &mut row_ids)?);
        added.extend(table_io::write_data_files(current, &new_batches).await?);
        let data_change = DataChange {
            added,
            removed,
            next_row: row_ids.advanced(),
            rewrite: false,
            replaced,
        };
        if data_change.is_empty() {
            continue;
        }
        let (requirements, updates) =
            table_io::produce_snapshot(current, data_change, commit_ms).await?;
        table_changes.push(TableChange {
            ident: db.ident(name),
            requirements,
            updates,
        });
    }
    db.commit_creating(created, table_changes).await
}

/// `values` cast for `table.property`, after checking the property may be set.
/// None: removing (setting null) a property the table does not have, which changes nothing.
fn settable(table: &TableData, property: &str, values: &ArrayRef) -> Result<Option<ArrayRef>> {
    let name = &table.info.name;
    let Ok(field) = table.schema().field_with_name(property).cloned() else {
        if values.null_count() == values.len() {
            return Ok(None);
        }
        return Err(Error::plan(format!(
            "`{name}` has no property `{property}` (set it through a variable of one label to add it)"
        )));
    };
    if table.info.primary_key.as_deref() == Some(property) {
        return Err(Error::execution(format!(
            "the primary key `{property}` cannot be changed"
        )));
    }
    if table.info.kind == TableKind::Edge && (property == "src" || property == "dst") {
        return Err(Error::execution(
            "a relationship's endpoints cannot be changed",
        ));
    }
    let values = cast_to(values, field.data_type(), property)?;
    if !field.is_nullable() && values.null_count() > 0 {
        return Err(Error::execution(format!(
            "`{name}.{property}` must not be null"
        )));
    }
    Ok(Some(values))
}

fn max_int_key(table: &TableData) -> Result<i64> {
    Ok(table
        .key_index()?
        .iter()
        .filter_map(|(k, _)| match k {
            Key::Int(i) => Some(*i),
            Key::Str(_) => None,
        })
        .max()
        .unwrap_or(0))
}

/// Adds to `names` the tables `writes` change or check beyond those their plan reads: the
/// labels and relationship types they create (with the endpoint labels of the latter), and
/// for deletes, every edge table touching a label in `names` (DETACH and the dangling check
/// look for a deleted node's relationships).
pub(crate) fn tables_written(
    snapshot: &Snapshot,
    writes: &[WriteOp],
    names: &mut BTreeSet<String>,
) {
    let mut deletes = false;
    let mut pending: Vec<&WriteOp> = writes.iter().collect();
    while let Some(op) = pending.pop() {
        match op {
            WriteOp::CreateNode { label, .. } => {
                names.insert(label.clone());
            }
            WriteOp::CreateEdge { rel_type, .. } => {
                names.insert(rel_type.clone());
                if let Some(slot) = snapshot.tables.get(rel_type) {
                    names.extend(slot.info.from.iter().cloned());
                    names.extend(slot.info.to.iter().cloned());
                }
            }
            WriteOp::SetProperty { .. } => {}
            WriteOp::Delete { .. } => deletes = true,
            WriteOp::Merge(m) => {
                pending.extend(m.create.iter().chain(&m.on_create).chain(&m.on_match))
            }
        }
    }
    if deletes {
        let edges: Vec<String> = snapshot
            .tables
            .iter()
            .filter(|(_, t)| {
                t.info.kind == TableKind::Edge
                    && [&t.info.from, &t.info.to]
                        .iter()
                        .any(|end| end.as_ref().is_some_and(|l| names.contains(l)))
            })
            .map(|(name, _)| name.clone())
            .collect();
        names.extend(edges);
    }
}

/// Edge rows of every edge table touching `label` whose endpoint is a deleted node.
fn edges_at(
    snapshot: &Snapshot,
    label: &str,
    deleted: &BTreeSet<u32>,
) -> Result<Vec<(String, Vec<u32>)>> {
    let nodes = data(snapshot, label)?;
    let pk = nodes
        .info
        .primary_key
        .clone()
        .expect("node tables have keys");
    let deleted: Vec<u32> = deleted.iter().copied().collect();
    let key_column = nodes
        .rows
        .take(&pk, &deleted)?
        .ok_or_else(|| Error::internal(format!("`{label}` lacks its key column")))?;
    let keys: HashSet<Key> = Key::column(&key_column)?.into_iter().flatten().collect();
    let mut out = Vec::new();
    for (name, slot) in &snapshot.tables {
        let touches =
            slot.info.from.as_deref() == Some(label) || slot.info.to.as_deref() == Some(label);
        if slot.info.kind != TableKind::Edge || !touches {
            continue;
        }
        let edge = slot.data().map_err(Error::from)?;
        let mut rows = Vec::new();
        for (end, column) in [(&edge.info.from, "src"), (&edge.info.to, "dst")] {
            if end.as_deref() != Some(label) {
                continue;
            }
            let values = edge.keys_from(column, 0)?;
            for (row, v) in values.iter().enumerate() {
                if v.as_ref().is_some_and(|v| keys.contains(v)) {
                    rows.push(row as u32);
                }
            }
        }
        if !rows.is_empty() {
            out.push((name.clone(), rows));
        }
    }
    Ok(out)
}

fn delete_edges_of(
    snapshot: &Snapshot,
    label: &str,
    edits: &mut HashMap<String, TableEdits>,
    detach: bool,
) -> Result<u64> {
    if !detach {
        return Ok(0);
    }
    let deleted = edits
        .get(label)
        .map(|e| e.deleted.clone())
        .unwrap_or_default();
    let mut count = 0;
    for (edge, rows) in edges_at(snapshot, label, &deleted)? {
        let entry = edits.entry(edge).or_default();
        for r in rows {
            if entry.deleted.insert(r) {
                count += 1;
            }
        }
    }
    Ok(count)
}

fn check_dangling(snapshot: &Snapshot, edits: &HashMap<String, TableEdits>) -> Result<()> {
    for (name, edit) in edits {
        let Some(table) = snapshot.get(name) else {
            continue;
        };
        if table.info.kind != TableKind::Node || edit.deleted.is_empty() {
            continue;
        }
        for (edge, rows) in edges_at(snapshot, name, &edit.deleted)? {
            let gone = edits.get(&edge).map(|e| &e.deleted);
            if rows.iter().any(|r| !gone.is_some_and(|g| g.contains(r))) {
                return Err(Error::execution(format!(
                    "cannot delete a `{name}` node that still has `{edge}` relationships; use DETACH DELETE"
                )));
            }
        }
    }
    Ok(())
}

fn check_unique_keys(table: &TableData, edit: &TableEdits) -> Result<()> {
    let Some(pk) = &table.info.primary_key else {
        return Ok(());
    };
    if edit.appended.is_empty() {
        return Ok(());
    }
    let existing = table.key_index()?;
    let mut seen = HashSet::new();
    for batch in &edit.appended {
        for key in Key::column(column(batch, pk)?)?.into_iter().flatten() {
            let taken = existing
                .get(&key)
                .is_some_and(|ord| !edit.deleted.contains(ord));
            if taken || !seen.insert(key.clone()) {
                return Err(Error::execution(format!(
                    "duplicate primary key {} in `{}`",
                    match key {
                        Key::Int(i) => i.to_string(),
                        Key::Str(s) => format!("'{s}'"),
                    },
                    table.info.name
                )));
            }
        }
    }
    Ok(())
}

/// Copy-on-write: every data file holding a deleted or updated row is rewritten without the
/// deleted rows and with the new values. Returns (removed file paths, replacement batches).
/// The stored files an edit touches, each with its rows after the edit (None when none is
/// left).
fn rewrite(table: &TableData, edit: &TableEdits) -> Result<Vec<(String, Option<RecordBatch>)>> {
    let mut rewritten = Vec::new();
    if edit.deleted.is_empty() && edit.updates.is_empty() {
        return Ok(rewritten);
    }
    let touched: BTreeSet<u32> = edit
        .deleted
        .iter()
        .copied()
        .chain(edit.updates.keys().copied())
        .collect();
    for file in &table.files {
        let range = file.start as u32..(file.start + file.len) as u32;
        if touched.range(range.clone()).next().is_none() {
            continue;
        }
        // The ids go along: a rewritten row keeps its id.
        let kept = edit_rows(table.stored_rows(file.start, file.len)?, file.start, edit)?;
        rewritten.push((file.path.clone(), (kept.num_rows() > 0).then_some(kept)));
    }
    Ok(rewritten)
}

/// The rows appended to a table with their new ids (the `k`-th appended row gets the `k`-th
/// id, as [`Sink`] told the statement) and the statement's later updates and deletes applied.
fn appended(table: &TableData, edit: &TableEdits, ids: &mut RowIds) -> Result<Vec<RecordBatch>> {
    if edit.appended.is_empty() {
        return Ok(vec![]);
    }
    let stored = table.rows.num_rows() as u32;
    let all = concat_batches(&table.schema(), &edit.appended)?;
    let all = table_io::with_row_ids(&all, Arc::new(ids.take(all.num_rows())?))?;
    if edit.updates.range(stored..).next().is_none()
        && edit.deleted.range(stored..).next().is_none()
    {
        return Ok(vec![all]);
    }
    Ok(vec![edit_rows(all, stored as usize, edit)?])
}

/// A batch with its row ids last (`table_io::with_row_ids`) split into the rows and the ids.
fn split_ids(batch: &RecordBatch) -> Result<(RecordBatch, ArrayRef)> {
    let last = batch.num_columns() - 1;
    debug_assert_eq!(batch.schema().field(last).name(), table_io::ROW_ID);
    let rows = batch.project(&(0..last).collect::<Vec<_>>())?;
    Ok((rows, batch.column(last).clone()))
}

/// `slice` (rows `start..` of the table) with the edit's updates and deletes applied.
fn edit_rows(mut slice: RecordBatch, start: usize, edit: &TableEdits) -> Result<RecordBatch> {
    let len = slice.num_rows();
    let range = start as u32..(start + len) as u32;
    // Updates: per column, zip the new values over the old ones.
    let mut per_column: HashMap<&str, Vec<(usize, &ArrayRef, usize)>> = HashMap::new();
    for (&ord, sets) in edit.updates.range(range.clone()) {
        for (col, values, row) in sets {
            per_column
                .entry(col.as_str())
                .or_default()
                .push((ord as usize - start, values, *row));
        }
    }
    if !per_column.is_empty() {
        let schema = slice.schema();
        let mut columns: Vec<ArrayRef> = slice.columns().to_vec();
        for (col, sets) in per_column {
            let i = schema.index_of(col)?;
            // Later SETs of the same cell win: keep the last per position.
            let mut last: BTreeMap<usize, (&ArrayRef, usize)> = BTreeMap::new();
            for (pos, values, row) in sets {
                last.insert(pos, (values, row));
            }
            let mut new_values: Vec<ArrayRef> = Vec::with_capacity(last.len());
            let mut index: Vec<Option<u32>> = vec![None; len];
            for (k, (pos, (values, row))) in last.into_iter().enumerate() {
                new_values.push(values.slice(row, 1));
                index[pos] = Some(k as u32);
            }
            let refs: Vec<&dyn Array> = new_values.iter().map(|a| a.as_ref()).collect();
            let stacked = concat(&refs)?;
            let index = UInt32Array::from(index);
            let spread = take(stacked.as_ref(), &index, None)?;
            let mask = BooleanArray::from_iter((0..len).map(|p| Some(index.is_valid(p))));
            columns[i] = zip(&mask, &spread, &columns[i])?;
        }
        slice = RecordBatch::try_new(schema, columns)?;
    }
    let keep = BooleanArray::from_iter(range.map(|ord| Some(!edit.deleted.contains(&ord))));
    Ok(filter_record_batch(&slice, &keep)?)
}
