//! The parser must never panic: arbitrary text, arbitrary token soup and mutations of valid
//! queries all come back as `Ok` or a well-formed `Err`.

use contextql::{ParseError, parse};
use proptest::prelude::*;

/// Valid queries covering the whole surface; mutated below.
const CORPUS: &[&str] = &[
    "MATCH (a:Package {name: 'vim'})-[:DEPENDS*1..2]->(b:Package) RETURN DISTINCT b.name",
    "MATCH (p:Package)-[:DEPENDS]->(:Package {name: 'libssl3'}) VECTOR SIMILAR TO $q ON p.embedding LIMIT 10 RETURN p.name, similarity_score ORDER BY similarity_score DESC",
    "MATCH (u:User)-[:OWNS]->(doc:Document) WHERE u.id = 1 VECTOR SIMILAR TO u.embedding ON doc.embedding METRIC l2 LIMIT 10 THRESHOLD 0.5 RETURN doc.title",
    "MATCH p = shortestPath((a:Package {name:'vim'})-[:DEPENDS*..6]->(b:Package {name:'libc6'})) RETURN length(p)",
    "AT SNAPSHOT 42 MATCH (n:Package) RETURN count(*)",
    "EXPLAIN ANALYZE AT TIMESTAMP '2026-01-01T00:00:00Z' MATCH (n) RETURN n",
    "CREATE NODE TABLE Package (id BIGINT PRIMARY KEY, name VARCHAR, embedding VECTOR(384), tags STRING[], v FLOAT[3])",
    "CREATE EDGE TABLE IF NOT EXISTS DEPENDS (FROM Package TO Package, FROM A TO B, since DATE)",
    "CREATE VECTOR INDEX package_embedding ON Package(embedding) WITH (metric = 'cosine', m = 16)",
    "DROP VECTOR INDEX IF EXISTS package_embedding; DROP NODE TABLE T; DROP EDGE TABLE E",
    "COPY Package FROM 'package.parquet' (header = true, batch = 0x10)",
    "CREATE (:Package {id: 1, name: 'libc6'})-[:DEPENDS]->(:Package {id: 2, name: 'libgcc-s1'})",
    "MERGE (n:P {id: 1}) ON CREATE SET n.c = timestamp() ON MATCH SET n += {seen: true}, n:Seen RETURN n",
    "MATCH (n) WHERE n.x IS NOT NULL AND NOT (n)-->(:L) OR n.name =~ 'a.*' XOR n.y STARTS WITH 'z' SET n.a = -1, n = $props REMOVE n.b, n:Old DETACH DELETE n",
    "UNWIND [1, 2.5, .5e1, 0o17, 0xFF, 'x\\n\\u00e9', null, true] AS x WITH x, count(*) AS c ORDER BY c ASC SKIP 1 LIMIT 2 WHERE c > 0 RETURN *, x UNION ALL RETURN 1 AS x",
    "RETURN [x IN range(1, 10) WHERE x % 2 = 0 | x ^ 2], all(y IN [1] WHERE y > 0), CASE WHEN 1 < 2 < 3 THEN 'a' ELSE 'b' END, CASE n WHEN 1 THEN 2 END, l[1..2], l[..-1], {`weird key`: $0} // done",
    "OPTIONAL MATCH (a)<-[r:T|U*2..]-(b), (c)--(d) WITH a /* c */ VECTOR SIMILAR TO [0.1, 0.2] LIMIT $k RETURN a:Label, a.count, exists(a.limit)",
];

const TOKENS: &[&str] = &[
    "MATCH",
    "OPTIONAL",
    "WHERE",
    "WITH",
    "DISTINCT",
    "UNWIND",
    "AS",
    "RETURN",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "SKIP",
    "LIMIT",
    "CREATE",
    "MERGE",
    "ON",
    "SET",
    "REMOVE",
    "DELETE",
    "DETACH",
    "UNION",
    "ALL",
    "VECTOR",
    "SIMILAR",
    "TO",
    "METRIC",
    "cosine",
    "THRESHOLD",
    "EXPLAIN",
    "ANALYZE",
    "AT",
    "SNAPSHOT",
    "TIMESTAMP",
    "NODE",
    "EDGE",
    "TABLE",
    "INDEX",
    "IF",
    "NOT",
    "EXISTS",
    "PRIMARY",
    "KEY",
    "DROP",
    "COPY",
    "FROM",
    "AND",
    "OR",
    "XOR",
    "IN",
    "STARTS",
    "ENDS",
    "CONTAINS",
    "IS",
    "NULL",
    "TRUE",
    "FALSE",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "count",
    "any",
    "shortestPath",
    "INT",
    "VECTOR(3)",
    "FLOAT[2]",
    "STRING[]",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ".",
    "..",
    ";",
    "=",
    "+=",
    "|",
    "*",
    "-",
    "->",
    "<-",
    "-->",
    "<",
    ">",
    "<=",
    ">=",
    "<>",
    "!=",
    "=~",
    "+",
    "/",
    "%",
    "^",
    "$p",
    "$0",
    "n",
    "m",
    "x",
    "`q q`",
    "Label",
    "0",
    "42",
    "1.5",
    ".5",
    "1e3",
    "0x1F",
    "0o7",
    "9223372036854775808",
    "'s'",
    "\"d\"",
    "'\\u00e9'",
    "'\\q'",
    "//c\n",
    "/*c*/",
    "/*",
    "'",
    "\"",
    "`",
    "\n",
    "é",
    "😀",
];

fn check(text: &str) {
    match parse(text) {
        Ok(script) => {
            for s in &script.statements {
                assert!(
                    s.span.start <= s.span.end && s.span.end <= text.len(),
                    "{text:?}"
                );
                assert!(text.is_char_boundary(s.span.start) && text.is_char_boundary(s.span.end));
            }
        }
        Err(e) => well_formed(text, &e),
    }
}

fn well_formed(text: &str, e: &ParseError) {
    assert!(e.offset <= text.len(), "{text:?}: {e:?}");
    assert!(e.line >= 1 && e.column >= 1, "{text:?}: {e:?}");
    assert!(
        !e.message.is_empty() && !e.found.is_empty(),
        "{text:?}: {e:?}"
    );
    let shown = e.to_string();
    assert!(shown.starts_with("syntax error at line "), "{shown}");
}

/// One edit of a valid query, on char boundaries.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, &'static str),
    Duplicate(usize, usize),
    Truncate(usize),
    Swap(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..12usize).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(a, t)| Mutation::Insert(a, t)),
        (any::<usize>(), 1..20usize).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let len = chars.len().max(1);
    match *m {
        Mutation::Delete(at, n) => {
            let at = at % len;
            let end = (at + n).min(chars.len());
            chars.drain(at.min(end)..end);
        }
        Mutation::Insert(at, tok) => {
            let at = at % (chars.len() + 1);
            let tail = chars.split_off(at);
            chars.extend(tok.chars());
            chars.extend(tail);
        }
        Mutation::Duplicate(at, n) => {
            let at = at % len;
            let end = (at + n).min(chars.len());
            let copy: Vec<char> = chars[at.min(end)..end].to_vec();
            let tail = chars.split_off(end);
            chars.extend(copy);
            chars.extend(tail);
        }
        Mutation::Truncate(at) => chars.truncate(at % len),
        Mutation::Swap(a, b) => {
            if !chars.is_empty() {
                let (a, b) = (a % chars.len(), b % chars.len());
                chars.swap(a, b);
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn arbitrary_ascii(text in "[ -~\n\t]{0,200}") {
        check(&text);
    }

    #[test]
    fn token_soup(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..80), glue in prop::sample::select(&[" ", "", "\n"][..])) {
        check(&tokens.join(glue));
    }

    #[test]
    fn mutated_queries(base in prop::sample::select(CORPUS), edits in prop::collection::vec(mutation(), 1..6)) {
        let mut text = base.to_string();
        for m in &edits {
            text = apply(&text, m);
        }
        check(&text);
    }
}

#[test]
fn corpus_parses() {
    for q in CORPUS {
        if let Err(e) = parse(q) {
            panic!("{q}\n{e}");
        }
    }
}

#[test]
fn pathological_inputs() {
    let inputs = [
        "(".repeat(100_000),
        "[".repeat(300),
        "{".repeat(300),
        format!("RETURN {}", "CASE WHEN ".repeat(500)),
        format!("RETURN {}1", "NOT ".repeat(5000)),
        format!("RETURN {}1", "-".repeat(5000)),
        format!("RETURN 1{}", " + 1".repeat(3000)),
        format!("RETURN a{}", ".b".repeat(3000)),
        format!("RETURN a{}", "[0]".repeat(3000)),
        format!("MATCH (a){} RETURN a", "-->()".repeat(2000)),
        "'".repeat(1001),
        "/*".repeat(1000),
        "\u{0}\u{FEFF}\u{202E}".to_string(),
        format!("RETURN {}", "1, ".repeat(20_000) + "1"),
        format!("RETURN {{{}a: 1}}", "a: 1, ".repeat(5000)),
        ";".repeat(10_000),
    ];
    for text in &inputs {
        check(text);
    }
}
