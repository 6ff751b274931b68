//! The write sink of ContextQL: turns the rows of a writing query into table changes and
//! commits them all at once (copy-on-write for updates and deletes).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array, new_null_array,
};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast, concat, concat_batches, filter_record_batch, take};
use arrow::datatypes::{DataType, SchemaRef};
use contextdb_catalog::TableChange;
use contextdb_planner::{Endpoint, Target, WriteOp};
use contextdb_storage::table_io::{self, DataChange};

use crate::cache::{Key, TableData};
use crate::database::Database;
use crate::error::{Error, Result};
use crate::graph_source::Snapshot;
use crate::schema::TableKind;

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

/// Builds `n` rows of `table` from (property, values) pairs; other columns are null.
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
    let columns = schema
        .fields()
        .iter()
        .map(|f| match properties.iter().find(|(p, _)| p == f.name()) {
            Some((_, values)) => cast_to(values, f.data_type(), f.name()),
            None => Ok(new_null_array(f.data_type(), n)),
        })
        .collect::<Result<Vec<_>>>()?;
    check_not_null(&schema, &columns, &table.info.name)?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn cast_to(values: &ArrayRef, to: &DataType, name: &str) -> Result<ArrayRef> {
    if values.data_type() == to {
        return Ok(values.clone());
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

/// Applies `writes` for every row of `batches`; returns the number of changes.
pub async fn apply(
    db: &Database,
    snapshot: &Snapshot,
    writes: &[WriteOp],
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<u64> {
    let rows = concat_batches(schema, batches)?;
    let n = rows.num_rows();
    let mut edits: HashMap<String, TableEdits> = HashMap::new();
    let mut created_keys: Vec<ArrayRef> = Vec::new();
    let mut next_key: HashMap<String, i64> = HashMap::new();
    let mut changes = 0u64;
    for op in writes {
        match op {
            WriteOp::CreateNode { label, properties } => {
                let table = data(snapshot, label)?;
                let pk = table
                    .info
                    .primary_key
                    .clone()
                    .expect("node tables have keys");
                let mut props: Vec<(String, ArrayRef)> = properties
                    .iter()
                    .map(|(p, c)| Ok((p.clone(), column(&rows, c)?.clone())))
                    .collect::<Result<_>>()?;
                if !props.iter().any(|(p, _)| p == &pk) {
                    let pk_type = table.schema().field_with_name(&pk)?.data_type().clone();
                    if !matches!(pk_type, DataType::Int64 | DataType::Int32) {
                        return Err(Error::execution(format!(
                            "CREATE (:{label}) needs its primary key `{pk}`"
                        )));
                    }
                    // Integer keys not given are assigned after the largest key in use.
                    let next = match next_key.get(label) {
                        Some(&k) => k,
                        None => max_int_key(table)? + 1,
                    };
                    let keys = Int64Array::from_iter_values(next..next + n as i64);
                    next_key.insert(label.clone(), next + n as i64);
                    props.push((pk.clone(), Arc::new(keys)));
                }
                let batch = build_rows(table, &props, n)?;
                created_keys.push(column(&batch, &pk)?.clone());
                edits.entry(label.clone()).or_default().appended.push(batch);
                changes += n as u64;
            }
            WriteOp::CreateEdge {
                rel_type,
                src,
                dst,
                properties,
            } => {
                let table = data(snapshot, rel_type)?;
                let endpoint = |e: &Endpoint, label: &Option<String>| -> Result<ArrayRef> {
                    match e {
                        Endpoint::Bound { ord_column } => {
                            let label = label.as_deref().unwrap_or_default();
                            bound_keys(snapshot, ords(column(&rows, ord_column)?)?, label, rel_type)
                        }
                        Endpoint::Created(i) => created_keys
                            .get(*i)
                            .cloned()
                            .ok_or_else(|| Error::internal("created node index out of range")),
                    }
                };
                let (s, d) = (
                    endpoint(src, &table.info.from)?,
                    endpoint(dst, &table.info.to)?,
                );
                if s.null_count() > 0 || d.null_count() > 0 {
                    return Err(Error::execution(format!(
                        "cannot create a {rel_type} relationship to a null node"
                    )));
                }
                let mut props: Vec<(String, ArrayRef)> = vec![("src".into(), s), ("dst".into(), d)];
                for (p, c) in properties {
                    props.push((p.clone(), column(&rows, c)?.clone()));
                }
                let batch = build_rows(table, &props, n)?;
                edits
                    .entry(rel_type.clone())
                    .or_default()
                    .appended
                    .push(batch);
                changes += n as u64;
            }
            WriteOp::SetProperty {
                target,
                property,
                column: value_column,
            } => {
                let values = column(&rows, value_column)?;
                let mut cast_values: HashMap<String, ArrayRef> = HashMap::new();
                for (row, (name, local)) in targets(snapshot, &rows, target)? {
                    let values = match cast_values.get(name) {
                        Some(v) => v.clone(),
                        None => {
                            let v = settable(data(snapshot, name)?, property, values)?;
                            cast_values.insert(name.to_string(), v.clone());
                            v
                        }
                    };
                    edits
                        .entry(name.to_string())
                        .or_default()
                        .updates
                        .entry(local)
                        .or_default()
                        .push((property.clone(), values, row));
                    changes += 1;
                }
            }
            WriteOp::Delete { target, detach } => {
                let mut labels = BTreeSet::new();
                for (_, (name, local)) in targets(snapshot, &rows, target)? {
                    if edits
                        .entry(name.to_string())
                        .or_default()
                        .deleted
                        .insert(local)
                    {
                        changes += 1;
                    }
                    if matches!(target, Target::Node { .. }) {
                        labels.insert(name.to_string());
                    }
                }
                for label in labels {
                    changes += delete_edges_of(snapshot, &label, &mut edits, *detach)?;
                }
            }
        }
    }
    commit_edits(db, snapshot, &edits).await?;
    Ok(changes)
}

/// Writes and commits the edits of several tables as one catalog entry.
pub(crate) async fn commit_edits(
    db: &Database,
    snapshot: &Snapshot,
    edits: &HashMap<String, TableEdits>,
) -> Result<()> {
    // Deleting a node that still has relationships needs DETACH (checked after all deletes,
    // so `DELETE r, n` in one statement works).
    check_dangling(snapshot, edits)?;
    let mut table_changes = Vec::new();
    let mut names: Vec<&String> = edits.keys().collect();
    names.sort();
    for name in names {
        let edit = &edits[name];
        let table = data(snapshot, name)?;
        check_unique_keys(table, edit)?;
        let current = snapshot.current.get(name).expect("listed with its data");
        let mut change = rewrite(table, edit)?;
        let mut new_batches: Vec<RecordBatch> = std::mem::take(&mut change.1);
        new_batches.extend(edit.appended.iter().cloned());
        let added = table_io::write_data_files(current, &new_batches).await?;
        let data_change = DataChange {
            added,
            removed: change.0,
        };
        if data_change.is_empty() {
            continue;
        }
        let (requirements, updates) = table_io::produce_snapshot(current, data_change).await?;
        table_changes.push(TableChange {
            ident: db.ident(name),
            requirements,
            updates,
        });
    }
    db.commit(table_changes).await
}

/// (row, (table, row in table)) of every row whose target variable is bound.
fn targets<'a>(
    snapshot: &'a Snapshot,
    rows: &RecordBatch,
    target: &Target,
) -> Result<Vec<(usize, (&'a str, u32))>> {
    let (column_name, nodes) = match target {
        Target::Node { ord_column } => (ord_column, true),
        Target::Rel { ord_column } => (ord_column, false),
    };
    let ords = ords(column(rows, column_name)?)?;
    let mut out = Vec::new();
    for row in 0..ords.len() {
        if ords.is_null(row) {
            continue;
        }
        let ordinal = ords.value(row);
        let at = if nodes {
            snapshot.node_at(ordinal)
        } else {
            snapshot.edge_at(ordinal)
        };
        out.push((
            row,
            at.ok_or_else(|| Error::internal(format!("ordinal {ordinal} is in no table")))?,
        ));
    }
    Ok(out)
}

/// `values` cast for `table.property`, after checking the property may be set.
fn settable(table: &TableData, property: &str, values: &ArrayRef) -> Result<ArrayRef> {
    let name = &table.info.name;
    let field = table.schema().field_with_name(property).map_err(|_| {
        Error::plan(format!(
            "`{name}` has no property `{property}` (adding properties by SET is not supported yet)"
        ))
    })?.clone();
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
    Ok(values)
}

/// The primary keys of bound endpoint nodes, which must all have `label`.
fn bound_keys(
    snapshot: &Snapshot,
    ords: &UInt32Array,
    label: &str,
    rel_type: &str,
) -> Result<ArrayRef> {
    let table = data(snapshot, label)?;
    let pk = table
        .info
        .primary_key
        .as_deref()
        .ok_or_else(|| Error::internal("node table without key"))?;
    let mut locals = Vec::with_capacity(ords.len());
    for ordinal in ords.iter() {
        let Some(ordinal) = ordinal else {
            locals.push(None);
            continue;
        };
        match snapshot.node_at(ordinal) {
            Some((l, local)) if l == label => locals.push(Some(local)),
            Some((l, _)) => {
                return Err(Error::execution(format!(
                    "{rel_type} connects `{label}` nodes here, not `{l}` (an edge table has one FROM/TO pair)"
                )));
            }
            None => return Err(Error::internal(format!("ordinal {ordinal} is in no table"))),
        }
    }
    Ok(take(
        column(&table.rows, pk)?.as_ref(),
        &UInt32Array::from(locals),
        None,
    )?)
}

fn max_int_key(table: &TableData) -> Result<i64> {
    Ok(table
        .key_index()?
        .keys()
        .filter_map(|k| match k {
            Key::Int(i) => Some(*i),
            Key::Str(_) => None,
        })
        .max()
        .unwrap_or(0))
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
    let key_column = Key::column(nodes.rows.column_by_name(&pk).expect("key column"))?;
    let keys: HashSet<Key> = deleted
        .iter()
        .filter_map(|&o| key_column.get(o as usize).cloned().flatten())
        .collect();
    let mut out = Vec::new();
    for (name, edge) in &snapshot.tables {
        if edge.info.kind != TableKind::Edge {
            continue;
        }
        let mut rows = Vec::new();
        for (end, column) in [(&edge.info.from, "src"), (&edge.info.to, "dst")] {
            if end.as_deref() != Some(label) {
                continue;
            }
            let values = Key::column(edge.rows.column_by_name(column).expect("endpoint column"))?;
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
fn rewrite(table: &TableData, edit: &TableEdits) -> Result<(HashSet<String>, Vec<RecordBatch>)> {
    let mut removed = HashSet::new();
    let mut batches = Vec::new();
    if edit.deleted.is_empty() && edit.updates.is_empty() {
        return Ok((removed, batches));
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
        removed.insert(file.path.clone());
        let mut slice = table.rows.slice(file.start, file.len);
        // Updates: per column, zip the new values over the old ones.
        let mut per_column: HashMap<&str, Vec<(usize, &ArrayRef, usize)>> = HashMap::new();
        for (&ord, sets) in edit.updates.range(range.clone()) {
            for (col, values, row) in sets {
                per_column.entry(col.as_str()).or_default().push((
                    ord as usize - file.start,
                    values,
                    *row,
                ));
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
                let mut index: Vec<Option<u32>> = vec![None; file.len];
                for (k, (pos, (values, row))) in last.into_iter().enumerate() {
                    new_values.push(values.slice(row, 1));
                    index[pos] = Some(k as u32);
                }
                let refs: Vec<&dyn Array> = new_values.iter().map(|a| a.as_ref()).collect();
                let stacked = concat(&refs)?;
                let index = UInt32Array::from(index);
                let spread = take(stacked.as_ref(), &index, None)?;
                let mask = BooleanArray::from_iter((0..file.len).map(|p| Some(index.is_valid(p))));
                columns[i] = zip(&mask, &spread, &columns[i])?;
            }
            slice = RecordBatch::try_new(schema, columns)?;
        }
        let keep = BooleanArray::from_iter(
            (range.start..range.end).map(|ord| Some(!edit.deleted.contains(&ord))),
        );
        let kept = filter_record_batch(&slice, &keep)?;
        if kept.num_rows() > 0 {
            batches.push(kept);
        }
    }
    Ok((removed, batches))
}
