//! Entry points. Parsing runs in three steps: a lexical pre-scan ([`crate::lex`]) enforces the
//! nesting limit and records whitespace/comment positions; pest checks the syntax against
//! `grammar/contextql.pest`; the builder ([`crate::build`]) turns pest's pairs into
//! [`crate::ast`] nodes, applying operator precedence with pest's Pratt parser and reporting
//! literal-level problems (ranges, escapes, dimensions) as positioned [`ParseError`]s.

use pest::Parser as _;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;

use crate::ast::{Script, Statement};
use crate::build::Builder;
pub use crate::error::ParseError;
use crate::error::token_at;
use crate::lex::{Trivia, prescan};

/// Deepest bracket (`(`, `[`, `{`) and `CASE` nesting accepted. Checked by a lexical pre-scan
/// before pest runs, because pest (and the AST builder) recurse once per level and a deeply
/// nested input would otherwise overflow the stack.
pub const MAX_NESTING_DEPTH: usize = 256;

/// Deepest expression tree accepted, counting one level per operator (`a + b + c` is two
/// levels deep) plus one per nested expression. Bounds the recursion of everything that walks
/// the AST later (including `Drop`).
pub const MAX_EXPRESSION_DEPTH: usize = 1000;

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/contextql.pest"]
struct CqlParser;

pub(crate) type P<'i> = Pair<'i, Rule>;
pub(crate) type Result<T> = std::result::Result<T, ParseError>;

/// Inputs nested at most this deep (brackets/CASE) are parsed on the caller's stack.
const INLINE_NESTING: usize = 24;
/// Longest run of unary operators (`NOT NOT - x`) parsed on the caller's stack; the Pratt
/// parser recurses once per unary operator.
const INLINE_UNARY_RUN: usize = 64;
/// Stack for deeper inputs (reserved, not committed): comfortably above the worst case
/// allowed by MAX_NESTING_DEPTH and MAX_EXPRESSION_DEPTH in an unoptimised build, where one
/// nesting level costs about 20 KiB of stack.
const DEEP_STACK_BYTES: usize = 64 << 20;

/// Parses a script of `;`-separated statements. Empty statements are ignored.
pub fn parse(text: &str) -> Result<Script> {
    let scan = prescan(text)?;
    if scan.max_brackets + scan.case_words <= INLINE_NESTING
        && scan.max_unary_run <= INLINE_UNARY_RUN
    {
        return parse_scanned(text, scan.trivia);
    }
    // Deeply nested input: pest and the AST builder recurse per level, which would not fit in
    // a small thread stack (2 MiB test threads, async workers); run them on a big one.
    let trivia = scan.trivia;
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("contextql-parse".into())
            .stack_size(DEEP_STACK_BYTES)
            .spawn_scoped(scope, move || parse_scanned(text, trivia));
        match spawned {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(ParseError::at(
                    text,
                    0,
                    "internal parser error: parser thread failed",
                ))
            }),
            Err(e) => Err(ParseError::at(
                text,
                0,
                format!("cannot parse this deeply nested input: {e}"),
            )),
        }
    })
}

fn parse_scanned(text: &str, trivia: Trivia) -> Result<Script> {
    let mut pairs =
        CqlParser::parse(Rule::script, text).map_err(|e| pest_error(text, &trivia, e))?;
    let builder = Builder::new(text, trivia);
    let mut statements = Vec::new();
    if let Some(script) = pairs.next() {
        for p in script.into_inner() {
            if p.as_rule() == Rule::statement {
                statements.push(builder.statement(p)?);
            }
        }
    }
    Ok(Script { statements })
}

/// Parses exactly one statement (a trailing `;` is allowed).
pub fn parse_statement(text: &str) -> Result<Statement> {
    let mut statements = parse(text)?.statements.into_iter();
    match (statements.next(), statements.next()) {
        (Some(s), None) => Ok(s),
        (None, _) => {
            let found = ParseError::found_display(&token_at(text, text.len()));
            Err(ParseError::new(
                text,
                text.len(),
                format!("expected statement, found {found}"),
                vec!["statement".to_string()],
            ))
        }
        (Some(_), Some(second)) => Err(ParseError::at(
            text,
            second.span.start,
            "expected exactly one statement",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// pest errors
// ---------------------------------------------------------------------------------------------

fn pest_error(text: &str, trivia: &Trivia, e: pest::error::Error<Rule>) -> ParseError {
    let mut offset = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found_token = token_at(text, offset);
    let found = ParseError::found_display(&found_token);
    if offset >= text.len() {
        // "found end of input": point just after the last token, not at a blank last line.
        offset = trivia.trimmed_end(0, text.len());
    }
    match &e.variant {
        ErrorVariant::ParsingError {
            positives,
            negatives,
        } => {
            let expected = expected_names(positives);
            let message = match expected.as_slice() {
                [] => {
                    let unexpected: Vec<&str> =
                        negatives.iter().filter_map(|r| readable(*r)).collect();
                    if unexpected.is_empty() {
                        format!("unexpected {found}")
                    } else {
                        format!("unexpected {}", unexpected.join(", "))
                    }
                }
                [one] => format!("expected {one}, found {found}"),
                many => format!("expected one of {}, found {found}", many.join(", ")),
            };
            let mut err = ParseError::new(text, offset, message, expected);
            err.found = found_token;
            err
        }
        // pest's own stack/call limits ("stack limit reached").
        ErrorVariant::CustomError { message } => ParseError::new(
            text,
            offset,
            format!("query too complex: {message}"),
            vec![],
        ),
    }
}

/// Readable, deduplicated, sorted names of the rules pest tried at the error position.
fn expected_names(positives: &[Rule]) -> Vec<String> {
    let mut expected: Vec<String> = Vec::new();
    for name in positives.iter().filter_map(|r| readable(*r)) {
        if !expected.iter().any(|e| e == name) {
            expected.push(name.to_string());
        }
    }
    // Prefix operators are implied by "expression".
    if expected.iter().any(|e| e == "expression") {
        expected.retain(|e| !matches!(e.as_str(), "NOT" | "'-'" | "'+'"));
    }
    // After a complete expression every operator is possible: say "operator" once instead of
    // listing twenty-five of them.
    if ["AND", "OR", "'+'"]
        .iter()
        .all(|o| expected.iter().any(|e| e == o))
    {
        expected.retain(|e| !OPERATOR_NAMES.contains(&e.as_str()));
        expected.push("operator".to_string());
    }
    // Keywords, then punctuation, then descriptions; end of input last.
    expected.sort_by_key(|e| {
        let class = if e == "end of input" {
            3
        } else if e.starts_with('\'') {
            1
        } else if e.chars().any(|c| c.is_ascii_lowercase()) {
            2
        } else {
            0
        };
        (class, e.clone())
    });
    expected
}

/// Readable names of the infix and postfix expression operators.
const OPERATOR_NAMES: &[&str] = &[
    "OR",
    "XOR",
    "AND",
    "IN",
    "STARTS WITH",
    "ENDS WITH",
    "CONTAINS",
    "IS",
    "'=~'",
    "'='",
    "'<>'",
    "'<'",
    "'<='",
    "'>'",
    "'>='",
    "'+'",
    "'-'",
    "'*'",
    "'/'",
    "'%'",
    "'^'",
    "'.'",
    "'['",
    "':'",
];

/// The name of a rule in "expected ..." messages; `None` for rules never worth naming.
fn readable(rule: Rule) -> Option<&'static str> {
    use Rule::*;
    Some(match rule {
        EOI => "end of input",
        // Silent rules never reach error reports; listed so that new rules must be named.
        WHITESPACE | COMMENT | script | statement_body | multi_part | single_part
        | reading_clause | updating_clause | set_item | remove_item | properties | prefix_op
        | postfix_op | infix_op | exponent | quantifier_kw | node_table_element | base_type
        | ident_char | unescaped_name | escaped_name | name_body | reserved => return None,
        statement | query | single_query => "statement",
        explain | kw_explain => "EXPLAIN",
        time_travel | kw_at => "AT",
        snapshot_ref | kw_snapshot => "SNAPSHOT",
        timestamp_ref | kw_timestamp => "TIMESTAMP",
        create_node_table | create_edge_table | create_vector_index | create_clause | kw_create => {
            "CREATE"
        }
        drop_stmt | kw_drop => "DROP",
        drop_kind => "NODE, EDGE or VECTOR",
        copy_stmt | kw_copy => "COPY",
        maintain_stmt => "COMPACT or VACUUM",
        kw_compact => "COMPACT",
        kw_vacuum => "VACUUM",
        show_indexes | kw_show => "SHOW",
        kw_indexes => "INDEXES",
        union_op | kw_union => "UNION",
        match_clause | kw_match => "MATCH",
        kw_optional => "OPTIONAL",
        where_clause | comp_where | kw_where => "WHERE",
        unwind_clause | kw_unwind => "UNWIND",
        with_clause | kw_with => "WITH",
        return_clause | kw_return => "RETURN",
        projection_body | projection_items | projection_item | sort_item | case_operand | expr
        | primary | case_expr | count_star | quantifier | function_call | list_comprehension
        | list_literal | paren_expr => "expression",
        order_by | kw_order => "ORDER BY",
        kw_by => "BY",
        skip_clause | kw_skip => "SKIP",
        limit_clause | vector_limit | kw_limit => "LIMIT",
        kw_asc => "ASC",
        kw_ascending => "ASCENDING",
        kw_desc => "DESC",
        kw_descending => "DESCENDING",
        kw_distinct => "DISTINCT",
        kw_as => "AS",
        merge_clause | kw_merge => "MERGE",
        merge_action | vector_on | kw_on => "ON",
        set_clause | kw_set => "SET",
        set_property | set_merge | set_replace | set_labels | property_target | remove_property
        | remove_labels | variable => "identifier",
        remove_clause | kw_remove => "REMOVE",
        delete_clause | kw_delete => "DELETE",
        kw_detach => "DETACH",
        vector_clause | kw_vector => "VECTOR",
        kw_similar => "SIMILAR",
        kw_to => "TO",
        vector_metric | kw_metric => "METRIC",
        vector_threshold | kw_threshold => "THRESHOLD",
        metric_name => "metric (cosine, l2, dot)",
        pattern | pattern_part | pattern_element => "pattern",
        shortest_path | kw_shortestpath => "shortestPath",
        all_shortest_paths | kw_allshortestpaths => "allShortestPaths",
        node_pattern | node_only_body => "node pattern",
        rel_pattern | pattern_chain => "relationship pattern",
        node_labels | label_test | rel_types | colon => "':'",
        rel_detail | bracket_op | list_suffix | lbracket => "'['",
        range_spec | star | op_mul => "'*'",
        range_int | dec_int | hex_int | oct_int | signed_integer | dimension => "integer",
        float_lit => "float",
        signed_number => "number",
        string_lit => "string",
        parameter => "parameter",
        option_value => "literal",
        kw_true => "TRUE",
        kw_false => "FALSE",
        kw_null => "NULL",
        kw_case => "CASE",
        case_when | kw_when => "WHEN",
        kw_then => "THEN",
        case_else | kw_else => "ELSE",
        kw_end => "END",
        kw_count => "count",
        kw_all => "ALL",
        kw_any => "any",
        kw_none => "none",
        kw_single => "single",
        comp_projection | pipe => "'|'",
        map_literal | lbrace => "'{'",
        map_entry | prop_key => "property key",
        prop_lookup | dot => "'.'",
        null_check | kw_is => "IS",
        op_not | kw_not => "NOT",
        op_neg | op_sub | dash => "'-'",
        op_pos | op_add => "'+'",
        op_or => "OR",
        op_xor => "XOR",
        op_and => "AND",
        op_regex => "'=~'",
        op_eq | eq => "'='",
        op_neq => "'<>'",
        op_lte => "'<='",
        op_gte => "'>='",
        op_lt | arrow_left => "'<'",
        op_gt | arrow_right => "'>'",
        op_in => "IN",
        op_starts_with | kw_starts => "STARTS WITH",
        op_ends_with | kw_ends => "ENDS WITH",
        op_contains => "CONTAINS",
        op_div => "'/'",
        op_mod => "'%'",
        op_pow => "'^'",
        lparen => "'('",
        rparen => "')'",
        rbracket => "']'",
        rbrace => "'}'",
        comma => "','",
        semi => "';'",
        plus_eq => "'+='",
        range_dots => "'..'",
        label_name => "label",
        rel_type_name => "relationship type",
        schema_name => "name",
        function_name => "function name",
        option_key | option => "option name",
        options => "'('",
        column_def => "column name",
        primary_key_constraint | column_primary_key | kw_primary => "PRIMARY KEY",
        kw_key => "KEY",
        column_default | kw_default => "DEFAULT",
        if_not_exists | if_exists | kw_if => "IF",
        kw_exists => "EXISTS",
        edge_endpoints | kw_from => "FROM",
        kw_node => "NODE",
        kw_edge => "EDGE",
        kw_table => "TABLE",
        kw_index => "INDEX",
        kw_analyze => "ANALYZE",
        data_type | simple_type | float_type_word | float_array_type => "type",
        vector_type => "VECTOR",
    })
}
