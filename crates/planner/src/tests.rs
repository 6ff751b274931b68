//! Lowering rules of the writing clauses, over a schema-only graph.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use contextdb_graph::Adjacency;
use contextql::ast::StatementBody;
use datafusion::error::{DataFusionError, Result};

use crate::lower_write::{MergeOp, WriteOp};
use crate::source::{EdgeTableInfo, GraphSource, NodeTableInfo};
use crate::{Lowered, Lowering, Params, PlanError, SchemaNeed};

/// Tag(name, uses) and Doc(id, title), with TAGGED from Doc to Tag. Planning never reads rows.
#[derive(Debug)]
struct Schemas;

fn schema(fields: &[(&str, DataType)]) -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

impl GraphSource for Schemas {
    fn node_tables(&self) -> Vec<NodeTableInfo> {
        vec![
            NodeTableInfo {
                label: "Doc".into(),
                primary_key: "id".into(),
                schema: schema(&[("id", DataType::Int64), ("title", DataType::Utf8)]),
                vector_indexes: Default::default(),
            },
            NodeTableInfo {
                label: "Tag".into(),
                primary_key: "name".into(),
                schema: schema(&[("name", DataType::Utf8), ("uses", DataType::Int64)]),
                vector_indexes: Default::default(),
            },
        ]
    }
    fn edge_tables(&self) -> Vec<EdgeTableInfo> {
        vec![EdgeTableInfo {
            table: "TAGGED".into(),
            rel_type: "TAGGED".into(),
            from: "Doc".into(),
            to: "Tag".into(),
            schema: schema(&[("src", DataType::Int64), ("dst", DataType::Utf8)]),
        }]
    }
    fn node_offset(&self, _: &str) -> Result<u32> {
        Err(DataFusionError::NotImplemented("schema only".into()))
    }
    fn edge_offset(&self, _: &str) -> Result<u32> {
        Err(DataFusionError::NotImplemented("schema only".into()))
    }
    fn node_rows(&self, _: &str) -> Result<Arc<crate::source::Chunked>> {
        Err(DataFusionError::NotImplemented("schema only".into()))
    }
    fn edge_rows(&self, _: &str) -> Result<Arc<crate::source::Chunked>> {
        Err(DataFusionError::NotImplemented("schema only".into()))
    }
    fn adjacency(&self, _: &str) -> Result<Arc<Adjacency>> {
        Err(DataFusionError::NotImplemented("schema only".into()))
    }
}

fn lower(text: &str) -> std::result::Result<Lowered, PlanError> {
    let statement = contextql::parse_statement(text).expect("parses");
    let StatementBody::Query(query) = &statement.body else {
        panic!("not a query: {text}");
    };
    let source: Arc<dyn GraphSource> = Arc::new(Schemas);
    Lowering::new(&source, &Params::new(), text).lower(query)
}

fn merge_op(lowered: &Lowered) -> &MergeOp {
    lowered
        .block
        .iter()
        .flat_map(|b| &b.writes)
        .find_map(|w| match w {
            WriteOp::Merge(m) => Some(m),
            _ => None,
        })
        .expect("a MERGE op")
}

#[test]
fn merge_of_a_node_creates_it_where_the_match_found_nothing() {
    let lowered = lower("MERGE (t:Tag {name: 'rust'}) ON CREATE SET t.uses = 1").unwrap();
    assert!(lowered.block.is_some());
    let merge = merge_op(&lowered);
    assert_eq!(merge.matched, "t.__ord");
    assert_eq!(
        merge.key.len(),
        1,
        "rows merge the same node by its property value"
    );
    assert!(matches!(
        merge.create.as_slice(),
        [WriteOp::CreateNode { label, ord_column, .. }] if label == "Tag" && ord_column == "t.__ord"
    ));
    assert_eq!(merge.on_create.len(), 1);
    assert!(merge.on_match.is_empty());
}

#[test]
fn merge_of_a_relationship_keys_on_its_bound_endpoints() {
    let lowered =
        lower("MATCH (d:Doc), (t:Tag) MERGE (d)-[r:TAGGED]->(t) ON MATCH SET r.x = 1").unwrap_err();
    // r has no property x: the planner asks for the column first (schema evolution).
    assert!(matches!(
        lowered.need.as_deref(),
        Some(SchemaNeed::Columns { table, .. }) if table == "TAGGED"
    ));
    let lowered = lower("MATCH (d:Doc), (t:Tag) MERGE (d)-[r:TAGGED]->(t)").unwrap();
    let merge = merge_op(&lowered);
    assert_eq!(merge.matched, "r.__ord");
    assert_eq!(
        merge.key,
        vec!["d.__ord".to_string(), "t.__ord".to_string()]
    );
    assert!(matches!(
        merge.create.as_slice(),
        [WriteOp::CreateEdge { src, dst, .. }] if src == "d.__ord" && dst == "t.__ord"
    ));
}

/// Lowers the whole of a writing query the way the engine does, resuming after each write
/// block (here against the same schema-only source); returns every part.
fn lower_parts(text: &str) -> std::result::Result<Vec<Lowered>, PlanError> {
    let statement = contextql::parse_statement(text).expect("parses");
    let StatementBody::Query(query) = &statement.body else {
        panic!("not a query: {text}");
    };
    let source: Arc<dyn GraphSource> = Arc::new(Schemas);
    let mut parts = vec![Lowering::new(&source, &Params::new(), text).lower(query)?];
    while let Some(rest) = parts.last_mut().and_then(|p| p.rest.take()) {
        parts.push(Lowering::new(&source, &Params::new(), text).resume(query, rest)?);
    }
    Ok(parts)
}

#[test]
fn a_merge_after_a_write_is_lowered_once_the_write_ran() {
    let first = lower("CREATE (:Tag {name: 'x'}) MERGE (:Tag {name: 'x'})").unwrap();
    assert!(first.block.is_some());
    assert!(first.rest.is_some(), "the MERGE waits for the CREATE");
    let parts = lower_parts("CREATE (:Tag {name: 'x'}) MERGE (:Tag {name: 'x'})").unwrap();
    assert_eq!(parts.len(), 2);
    assert!(matches!(
        parts[1]
            .block
            .as_ref()
            .expect("a MERGE block")
            .writes
            .as_slice(),
        [WriteOp::Merge(_)]
    ));
}

#[test]
fn merge_of_a_bound_node_is_an_error() {
    let err = lower("MATCH (t:Tag) MERGE (t)").unwrap_err();
    assert!(err.message.contains("already declared"), "{}", err.message);
    let err = lower("MATCH (t:Tag) MERGE (t:Tag)-[:TAGGED]->(:Tag)").unwrap_err();
    assert!(err.message.contains("already declared"), "{}", err.message);
}

#[test]
fn writes_after_a_with_form_a_second_block_over_the_first_ones_rows() {
    let parts =
        lower_parts("CREATE (d:Doc {id: 1}) WITH d CREATE (d)-[:TAGGED]->(:Tag {name: 'a'})")
            .unwrap();
    assert_eq!(parts.len(), 2);
    let second = parts[1].block.as_ref().expect("a second block");
    let second = format!("{}", second.plan.display_indent());
    assert!(second.contains("WrittenRows"), "{second}");
    assert!(parts[1].returning.is_none());
}

#[test]
fn a_match_after_a_write_reads_the_block_s_rows_and_the_graph() {
    let parts = lower_parts("CREATE (:Doc {id: 1}) WITH 1 AS x MATCH (n:Doc) RETURN n.id").unwrap();
    assert_eq!(parts.len(), 2);
    assert!(parts[1].block.is_none());
    let returning = format!(
        "{}",
        parts[1]
            .returning
            .as_ref()
            .expect("returns")
            .display_indent()
    );
    assert!(returning.contains("WrittenRows"), "{returning}");
    assert!(returning.contains("NodeScan"), "{returning}");
}

#[test]
fn set_of_a_missing_property_asks_for_the_column() {
    let err = lower("MATCH (t:Tag) SET t.stars = 5").unwrap_err();
    assert!(matches!(
        err.need.as_deref(),
        Some(SchemaNeed::Columns { table, columns }) if table == "Tag" && columns[0].0 == "stars"
    ));
    // Removing a property no table has changes nothing and needs nothing.
    assert!(lower("MATCH (t:Tag) REMOVE t.stars").is_ok());
}

/// The plan after DataFusion's optimizer with the graph column pruning rule.
fn optimized(text: &str) -> String {
    use datafusion::execution::SessionStateBuilder;
    let plan = lower(text).unwrap().plan;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_optimizer_rule(Arc::new(crate::prune::PruneGraphColumns))
        .with_optimizer_rule(Arc::new(crate::var_length::ReachWhenDistinct))
        .build();
    format!("{}", state.optimize(&plan).unwrap().display_indent())
}

#[test]
fn graph_operators_produce_only_the_columns_the_plan_reads() {
    let plan = optimized("MATCH (d:Doc)-[r:TAGGED]->(t:Tag) RETURN t.name");
    let expand = plan
        .lines()
        .find(|l| l.contains("GraphExpand"))
        .expect(&plan);
    assert!(expand.ends_with("columns=[t.name]"), "{plan}");
    let scan = plan.lines().find(|l| l.contains("NodeScan")).expect(&plan);
    assert!(scan.ends_with("columns=[d.__ord]"), "{plan}");
    // A filter's columns are read too.
    let plan = optimized("MATCH (d:Doc)-[r:TAGGED]->(t:Tag) WHERE t.uses > 1 RETURN count(*)");
    let expand = plan
        .lines()
        .find(|l| l.contains("GraphExpand"))
        .expect(&plan);
    assert!(expand.ends_with("columns=[t.uses]"), "{plan}");
}

#[test]
fn a_start_node_with_a_constant_property_is_looked_up() {
    let plan = optimized("MATCH (t:Tag {name: 'rust'})<-[:TAGGED]-(d:Doc) RETURN d.title");
    let scan = plan.lines().find(|l| l.contains("NodeScan")).expect(&plan);
    assert!(scan.contains("lookup name = rust"), "{plan}");
    // The filter stays: the lookup only narrows what the scan reads.
    assert!(plan.contains("Filter"), "{plan}");
    // A value that depends on the row cannot be looked up.
    let plan = optimized("UNWIND ['a'] AS x MATCH (t:Tag {name: x}) RETURN t.uses");
    assert!(!plan.contains("lookup"), "{plan}");
}
