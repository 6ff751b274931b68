//! `vector_search('Table', 'column', <vector>, k [, 'metric'])`: SQL's table function for
//! the k rows of a table whose vector column is most similar to a query vector, as
//! `(key, score)`: the row's primary key and its `similarity_score` (ContextQL's scores: see
//! docs/contextql.md, "VECTOR SIMILAR TO").
//!
//! Over a node table whose column has a vector index (of the metric asked for) and a constant
//! query vector, it is ContextQL's `AnnScan` (docs/vectors.md), which loads the table and
//! opens the index when it starts. Otherwise exact, as VECTOR SIMILAR TO without an index:
//! every row is scored and DataFusion's sort with a fetch keeps the best k. The function
//! plans over the statement's snapshot.

use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::DataType;
use contextdb_planner::SourceRef;
use contextdb_planner::nodes::column_name;
use datafusion::catalog::TableFunctionImpl;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{TableProvider, provider_as_source};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, LogicalPlanBuilder};

use crate::graph_source::Snapshot;
use crate::provider::{SnapshotTable, StatementWrites};

/// The name SQL calls it by.
pub(crate) const NAME: &str = "vector_search";

/// The most rows one call may ask for: a larger k is a scan, not a search.
pub const VECTOR_SEARCH_K_MAX: usize = 100_000;

#[derive(Debug)]
pub(crate) struct VectorSearch {
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) schemas: Arc<crate::sql::SqlSchemas>,
    pub(crate) writes: Arc<StatementWrites>,
}

fn plan_error(message: String) -> DataFusionError {
    DataFusionError::Plan(format!("{NAME}(): {message}"))
}

fn string_arg(args: &[Expr], i: usize, what: &str) -> DfResult<String> {
    match args.get(i) {
        Some(Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        )) => Ok(s.clone()),
        _ => Err(plan_error(format!(
            "argument {} ({what}) must be a string literal",
            i + 1
        ))),
    }
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

impl VectorSearch {
    /// The search through the column's vector index, as ContextQL's `AnnScan` (None: the
    /// table is not a node table of the graph, the column has no index of this metric, or the
    /// query vector is not a constant list of numbers; the search is then exact).
    fn indexed(
        &self,
        key: &str,
        slot: &crate::graph_source::TableSlot,
        vector_column: &str,
        query: &Expr,
        metric: contextdb_vector::Metric,
        k: usize,
    ) -> DfResult<Option<LogicalPlan>> {
        use contextdb_planner::GraphSource;
        use contextdb_planner::vector::{
            AnnScan, SIMILARITY_SCORE, VectorSpec, constant_value, constant_vector, ordered,
        };
        let Some(def) = slot.info.vector_indexes.get(vector_column) else {
            return Ok(None);
        };
        if def.file.is_none() || !def.params().is_ok_and(|p| p.metric == metric) {
            return Ok(None);
        }
        let Some(node) = self.snapshot.node_table(key) else {
            return Ok(None);
        };
        let Some(values) = constant_value(query).and_then(|q| constant_vector(&q)) else {
            return Ok(None);
        };
        let var = "v";
        let spec = VectorSpec {
            var: var.to_string(),
            label: key.to_string(),
            property: vector_column.to_string(),
            query: values.into_iter().map(ordered::F64).collect(),
            metric,
            k,
            threshold: None,
            index: Some(def.name.clone()),
            table_rows: slot.rows,
        };
        let source: Arc<dyn GraphSource> = self.snapshot.clone();
        let scan = AnnScan::try_new(SourceRef(source), spec, &node)?;
        let primary_key = column_name(var, &node.primary_key);
        let plan = LogicalPlanBuilder::from(LogicalPlan::Extension(Extension {
            node: Arc::new(scan),
        }))
        .project(vec![
            column(&primary_key).alias("key"),
            column(SIMILARITY_SCORE).alias("score"),
        ])?
        .build()?;
        Ok(Some(plan))
    }
}

impl TableFunctionImpl for VectorSearch {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        if !(4..=5).contains(&args.len()) {
            return Err(plan_error(format!(
                "takes a table, a vector column, a query vector, k and optionally a metric; \
                 got {} arguments",
                args.len()
            )));
        }
        let table = string_arg(args, 0, "the table")?;
        let vector_column = string_arg(args, 1, "the vector column")?;
        let key = crate::sql::table_key_of(
            &self.schemas,
            &TableReference::parse_str_normalized(&table, true),
        )
        .map_err(|e| plan_error(e.message))?;
        let slot = self
            .snapshot
            .tables
            .get(&key)
            .ok_or_else(|| plan_error(format!("table `{table}` does not exist")))?;
        let primary_key = slot.info.primary_key.clone().ok_or_else(|| {
            plan_error(format!(
                "`{table}` has no primary key to identify its rows by"
            ))
        })?;
        let dimension = match slot
            .schema
            .field_with_name(&vector_column)
            .map(|f| f.data_type())
        {
            Ok(DataType::FixedSizeList(item, d)) if item.data_type().is_floating() => *d as usize,
            Ok(other) => {
                return Err(plan_error(format!(
                    "`{table}.{vector_column}` is {other}, not a vector (VECTOR(d))"
                )));
            }
            Err(_) => {
                return Err(plan_error(format!(
                    "`{table}` has no column `{vector_column}`"
                )));
            }
        };
        let query = args[2].clone();
        // A literal vector's length is known now (folded to a list, or still make_array).
        let length = match &query {
            Expr::Literal(ScalarValue::List(list), _) if list.len() == 1 && list.is_valid(0) => {
                Some(list.value_length(0) as usize)
            }
            Expr::Literal(ScalarValue::FixedSizeList(list), _) => {
                Some(list.value_length() as usize)
            }
            Expr::ScalarFunction(f) if f.name() == "make_array" => Some(f.args.len()),
            _ => None,
        };
        if let Some(n) = length
            && n != dimension
        {
            return Err(plan_error(format!(
                "the query vector has {n} dimensions; `{table}.{vector_column}` has {dimension}"
            )));
        }
        let k = match &args[3] {
            Expr::Literal(ScalarValue::Int64(Some(k)), _) if *k >= 0 => *k as usize,
            other => {
                return Err(plan_error(format!(
                    "k must be a non-negative integer literal, not {other}"
                )));
            }
        };
        if k > VECTOR_SEARCH_K_MAX {
            return Err(plan_error(format!(
                "k is at most {VECTOR_SEARCH_K_MAX} (VECTOR_SEARCH_K_MAX), got {k}"
            )));
        }
        let metric = match args.len() {
            5 => {
                let name = string_arg(args, 4, "the metric")?;
                contextdb_vector::Metric::parse(&name).ok_or_else(|| {
                    plan_error(format!("unknown metric `{name}` (cosine, l2 or dot)"))
                })?
            }
            _ => slot
                .info
                .vector_indexes
                .get(&vector_column)
                .and_then(|d| d.params().ok())
                .map_or(contextdb_vector::Metric::Cosine, |p| p.metric),
        };
        if let Some(plan) = self.indexed(&key, slot, &vector_column, &query, metric, k)? {
            return Ok(Arc::new(ViewTable::new(plan, None)));
        }
        let (score, _) =
            contextdb_vector::score_and_distance(metric, column(&vector_column), query);
        let provider = SnapshotTable::new(
            self.snapshot.clone(),
            key.clone(),
            slot.schema.clone(),
            self.writes.clone(),
        );
        let plan = LogicalPlanBuilder::scan(
            crate::schema::display_key(&key),
            provider_as_source(Arc::new(provider)),
            None,
        )?
        .project(vec![
            column(&primary_key).alias("key"),
            score.alias("score"),
        ])?
        .filter(column("score").is_not_null())?
        .sort(vec![column("score").sort(false, false)])?
        // A Limit node, not the sort's fetch: DataFusion's SQL planner drops a sort inside a
        // FROM-clause relation unless a Limit sits above it (`optimize_subquery_sort`).
        .limit(0, Some(k))?
        .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}
