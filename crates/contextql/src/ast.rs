//! The typed AST of ContextQL.
//!
//! Every node that can be the subject of an error carries a [`Span`] (byte offsets into the
//! statement text) so that the planner can report openCypher's semantic errors with a position.

use std::fmt;

/// Byte range `[start, end)` into the statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        debug_assert!(start <= end);
        Span { start, end }
    }

    /// 1-based line and column of `start` in `text`.
    pub fn line_col(&self, text: &str) -> (usize, usize) {
        let upto = &text[..self.start.min(text.len())];
        let line = upto.matches('\n').count() + 1;
        let col = upto
            .rsplit('\n')
            .next()
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, col)
    }
}

/// A whole input: one or more `;`-separated statements.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub statements: Vec<Statement>,
}

/// One statement, optionally prefixed by `EXPLAIN [ANALYZE]` and `AT SNAPSHOT/TIMESTAMP`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub explain: Option<Explain>,
    pub at: Option<TimeTravel>,
    pub body: StatementBody,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explain {
    Plan,
    Analyze,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TimeTravel {
    /// `AT SNAPSHOT 42`: an Iceberg snapshot id (applies to every table read).
    Snapshot(i64),
    /// `AT TIMESTAMP '2026-01-01T00:00:00Z'`: the latest snapshot at or before that time.
    Timestamp(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StatementBody {
    Query(Query),
    CreateNodeTable(CreateNodeTable),
    CreateEdgeTable(CreateEdgeTable),
    CreateVectorIndex(CreateVectorIndex),
    /// `DROP NODE TABLE x` / `DROP EDGE TABLE x` / `DROP VECTOR INDEX x`.
    Drop(DropObject),
    Copy(CopyFrom),
    /// `COMPACT [TABLE x]` / `VACUUM [TABLE x]`.
    Maintain(Maintain),
    /// `SHOW [VECTOR] INDEXES`.
    ShowIndexes,
}

/// A table maintenance statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintain {
    pub kind: MaintainKind,
    /// None: every table.
    pub table: Option<Ident>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintainKind {
    /// Merge small data files.
    Compact,
    /// Expire snapshots past the retention and remove files no snapshot references.
    Vacuum,
}

/// A query: a chain of clauses, optionally combined with `UNION [ALL]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub parts: Vec<SingleQuery>,
    /// `union_all[i]` tells how `parts[i]` and `parts[i + 1]` are combined.
    pub union_all: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SingleQuery {
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    Match(MatchClause),
    Unwind(Unwind),
    With(Projection),
    Return(Projection),
    Create(CreateClause),
    Merge(MergeClause),
    Set(SetClause),
    Remove(RemoveClause),
    Delete(DeleteClause),
    /// `VECTOR SIMILAR TO ...` after a MATCH (with its WHERE) or a WITH.
    VectorSimilar(VectorSimilar),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MatchClause {
    pub optional: bool,
    pub pattern: Vec<PatternPart>,
    pub where_: Option<Expr>,
    pub span: Span,
}

/// `p = (a)-[]->(b)` or `shortestPath(...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternPart {
    pub variable: Option<Ident>,
    pub kind: PatternKind,
    pub element: PatternElement,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    Plain,
    ShortestPath,
    AllShortestPaths,
}

/// A node followed by zero or more (relationship, node) steps.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternElement {
    pub start: NodePattern,
    pub chain: Vec<(RelPattern, NodePattern)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodePattern {
    pub variable: Option<Ident>,
    /// openCypher allows `:A:B`; the planner rejects more than one label.
    pub labels: Vec<Ident>,
    /// `{k: v, ...}` or a parameter.
    pub properties: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `-[]->`
    Outgoing,
    /// `<-[]-`
    Incoming,
    /// `-[]-` (or `<-[]->`)
    Both,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelPattern {
    pub variable: Option<Ident>,
    /// `:A|B` alternatives.
    pub types: Vec<Ident>,
    /// `*`, `*2`, `*1..3`, `*..3`, `*2..`: `Some((min, max))`.
    pub length: Option<(Option<u64>, Option<u64>)>,
    pub properties: Option<Expr>,
    pub direction: Direction,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unwind {
    pub expr: Expr,
    pub alias: Ident,
    pub span: Span,
}

/// The body of WITH and RETURN.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub distinct: bool,
    /// `RETURN *` / `WITH *` (possibly followed by more items).
    pub star: bool,
    pub items: Vec<ProjectionItem>,
    pub order_by: Vec<SortItem>,
    pub skip: Option<Expr>,
    pub limit: Option<Expr>,
    /// Only for WITH.
    pub where_: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionItem {
    pub expr: Expr,
    pub alias: Option<Ident>,
    /// The item's text as written, which openCypher uses as the column name when no alias is
    /// given (`RETURN a.name` names the column `a.name`).
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortItem {
    pub expr: Expr,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateClause {
    pub pattern: Vec<PatternPart>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MergeClause {
    pub pattern: PatternPart,
    pub on_create: Vec<SetItem>,
    pub on_match: Vec<SetItem>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetClause {
    pub items: Vec<SetItem>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetItem {
    /// `n.prop = expr` (target is a property expression).
    Property { target: Expr, value: Expr },
    /// `n = {map}`
    Replace { variable: Ident, value: Expr },
    /// `n += {map}`
    Merge { variable: Ident, value: Expr },
    /// `n:Label`
    Labels { variable: Ident, labels: Vec<Ident> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoveClause {
    pub items: Vec<RemoveItem>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RemoveItem {
    Property(Expr),
    Labels { variable: Ident, labels: Vec<Ident> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteClause {
    pub detach: bool,
    pub exprs: Vec<Expr>,
    pub span: Span,
}

/// `VECTOR SIMILAR TO <expr> [ON <var>.<prop>] [METRIC m] LIMIT k [THRESHOLD t]`
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSimilar {
    pub query: Expr,
    pub on: Option<(Ident, Ident)>,
    pub metric: Option<Metric>,
    pub limit: Expr,
    pub threshold: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Cosine,
    L2,
    Dot,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        })
    }
}

/// An identifier with its position. Backquoted identifiers are unquoted here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    Parameter(String),
    Variable(String),
    /// `expr.key`
    Property(Box<Expr>, String),
    List(Vec<Expr>),
    Map(Vec<(String, Expr)>),
    /// `[1.0, 2.0]::VECTOR` is not needed: vector literals are lists of numbers, typed by use.
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `a < b <= c` is kept as a chain, as openCypher defines it.
    Comparison(Box<Expr>, Vec<(CompareOp, Expr)>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `expr:Label` in WHERE.
    HasLabels(Box<Expr>, Vec<Ident>),
    /// `list[i]`
    Index(Box<Expr>, Box<Expr>),
    /// `list[a..b]`
    Slice(Box<Expr>, Option<Box<Expr>>, Option<Box<Expr>>),
    /// `f(args)`, `f(DISTINCT args)`; `count(*)` is `CountStar`.
    Function {
        name: String,
        distinct: bool,
        args: Vec<Expr>,
    },
    CountStar,
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_: Option<Box<Expr>>,
    },
    /// `[x IN list WHERE pred | expr]`
    ListComprehension {
        variable: String,
        list: Box<Expr>,
        predicate: Option<Box<Expr>>,
        projection: Option<Box<Expr>>,
    },
    /// `all/any/none/single(x IN list WHERE pred)`
    Quantifier {
        kind: Quantifier,
        variable: String,
        list: Box<Expr>,
        predicate: Box<Expr>,
    },
    /// A pattern used as a predicate in WHERE: `(a)-->(b)`.
    PatternPredicate(Box<PatternElement>),
    /// `EXISTS { ... }` is not supported; `exists(n.prop)` is a Function.
    Star,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    All,
    Any,
    None,
    Single,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    Xor,
    And,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    In,
    StartsWith,
    EndsWith,
    Contains,
    RegexMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

// ---------------------------------------------------------------------------------------------
// DDL and COPY
// ---------------------------------------------------------------------------------------------

/// `CREATE NODE TABLE [IF NOT EXISTS] Name (col TYPE [PRIMARY KEY], ..., [PRIMARY KEY (col)])`
#[derive(Debug, Clone, PartialEq)]
pub struct CreateNodeTable {
    pub name: Ident,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    /// The primary key column, from `col TYPE PRIMARY KEY` or `PRIMARY KEY (col)`.
    pub primary_key: Option<Ident>,
}

/// `CREATE EDGE TABLE [IF NOT EXISTS] Name (FROM A TO B [, FROM C TO D] [, col TYPE ...])`
#[derive(Debug, Clone, PartialEq)]
pub struct CreateEdgeTable {
    pub name: Ident,
    pub if_not_exists: bool,
    pub endpoints: Vec<(Ident, Ident)>,
    pub columns: Vec<ColumnDef>,
}

/// `CREATE VECTOR INDEX name ON Label(prop) [WITH (k = v, ...)]`
#[derive(Debug, Clone, PartialEq)]
pub struct CreateVectorIndex {
    pub name: Ident,
    pub label: Ident,
    pub property: Ident,
    pub options: Vec<(String, Literal)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    NodeTable,
    EdgeTable,
    VectorIndex,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DropObject {
    pub kind: ObjectKind,
    pub name: Ident,
    pub if_exists: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: Ident,
    pub data_type: DataType,
    pub primary_key: bool,
    /// `DEFAULT literal`: the value a write that leaves the column out stores.
    pub default: Option<Literal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DataType {
    Boolean,
    /// TINYINT/SMALLINT/INT/INTEGER map to Int32; BIGINT/INT64 to Int64.
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Date,
    /// Microseconds, no time zone.
    Timestamp,
    /// `TIMESTAMPTZ`: an instant (microseconds, stored in UTC).
    TimestampTz,
    /// `TIME`: time of day in microseconds.
    Time,
    /// `BINARY` / `BLOB` / `BYTEA`: variable-length bytes.
    Binary,
    /// Fixed-length bytes (from SQL's `FixedSizeBinary`).
    Fixed(u32),
    /// Precision (1..=38) and scale (0..=precision).
    Decimal(u8, u8),
    /// `VECTOR(d)` or `FLOAT[d]`.
    Vector(u32),
    /// `TYPE[]` (a variable-length list).
    List(Box<DataType>),
    /// Named fields (from SQL).
    Struct(Vec<(String, DataType)>),
    /// Keys to values (from SQL).
    Map(Box<DataType>, Box<DataType>),
}

/// `COPY Table FROM 'file' [(option = value, ...)]`
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFrom {
    pub table: Ident,
    pub path: String,
    pub options: Vec<(String, Literal)>,
}
