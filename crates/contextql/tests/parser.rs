//! Parser tests: every construct of the grammar, precedence, spans and error reporting.

use contextql::ast::*;
use contextql::{MAX_NESTING_DEPTH, ParseError, parse, parse_statement};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn stmt(q: &str) -> Statement {
    match parse_statement(q) {
        Ok(s) => s,
        Err(e) => panic!("failed to parse {q:?}:\n{e}"),
    }
}

fn err(q: &str) -> ParseError {
    match parse(q) {
        Ok(s) => panic!("expected an error for {q:?}, got {s:#?}"),
        Err(e) => e,
    }
}

fn query(q: &str) -> Query {
    match stmt(q).body {
        StatementBody::Query(q) => q,
        other => panic!("not a query: {other:?}"),
    }
}

fn clauses(q: &str) -> Vec<Clause> {
    let mut query = query(q);
    assert_eq!(query.parts.len(), 1, "{q}");
    query.parts.remove(0).clauses
}

/// The projection of the last clause (RETURN).
fn ret(q: &str) -> Projection {
    match clauses(q).pop() {
        Some(Clause::Return(p)) => p,
        other => panic!("last clause is not RETURN: {other:?}"),
    }
}

/// The single RETURN item of `RETURN <e>` as an S-expression.
fn e(expr: &str) -> String {
    let p = ret(&format!("RETURN {expr}"));
    assert_eq!(p.items.len(), 1, "{expr}");
    sexp(&p.items[0].expr)
}

fn first_match(q: &str) -> MatchClause {
    match clauses(q).into_iter().next() {
        Some(Clause::Match(m)) => m,
        other => panic!("first clause is not MATCH: {other:?}"),
    }
}

fn sexp(e: &Expr) -> String {
    use ExprKind::*;
    let opt = |e: &Option<Box<Expr>>| e.as_ref().map_or("_".to_string(), |e| sexp(e));
    match &e.kind {
        Literal(l) => lit(l),
        Parameter(p) => format!("${p}"),
        Variable(v) => v.clone(),
        Property(b, k) => format!("(. {} {k})", sexp(b)),
        List(xs) => format!("[{}]", xs.iter().map(sexp).collect::<Vec<_>>().join(" ")),
        Map(kv) => format!(
            "{{{}}}",
            kv.iter()
                .map(|(k, v)| format!("{k}: {}", sexp(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Unary(op, x) => format!("({} {})", format!("{op:?}").to_lowercase(), sexp(x)),
        Binary(op, a, b) => format!("({} {} {})", binop(*op), sexp(a), sexp(b)),
        Comparison(first, rest) => {
            let mut s = format!("(cmp {}", sexp(first));
            for (op, x) in rest {
                s += &format!(" {} {}", cmpop(*op), sexp(x));
            }
            s + ")"
        }
        IsNull { expr, negated } => {
            format!(
                "({} {})",
                if *negated { "is-not-null" } else { "is-null" },
                sexp(expr)
            )
        }
        HasLabels(x, ls) => format!(
            "(labels {} {})",
            sexp(x),
            ls.iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Index(x, i) => format!("(idx {} {})", sexp(x), sexp(i)),
        Slice(x, a, b) => format!("(slice {} {} {})", sexp(x), opt(a), opt(b)),
        Function {
            name,
            distinct,
            args,
        } => format!(
            "({name}{}{})",
            if *distinct { " distinct" } else { "" },
            args.iter()
                .map(|a| format!(" {}", sexp(a)))
                .collect::<String>()
        ),
        CountStar => "count(*)".to_string(),
        Case {
            operand,
            whens,
            else_,
        } => {
            let mut s = "(case".to_string();
            if let Some(o) = operand {
                s += &format!(" {}", sexp(o));
            }
            for (w, t) in whens {
                s += &format!(" (when {} {})", sexp(w), sexp(t));
            }
            if let Some(x) = else_ {
                s += &format!(" (else {})", sexp(x));
            }
            s + ")"
        }
        ListComprehension {
            variable,
            list,
            predicate,
            projection,
        } => format!(
            "(comp {variable} {} {} {})",
            sexp(list),
            opt(predicate),
            opt(projection)
        ),
        Quantifier {
            kind,
            variable,
            list,
            predicate,
        } => format!(
            "({} {variable} {} {})",
            format!("{kind:?}").to_lowercase(),
            sexp(list),
            sexp(predicate)
        ),
        PatternPredicate(p) => format!("(pattern {})", pattern(p)),
        Star => "*".to_string(),
    }
}

fn lit(l: &Literal) -> String {
    match l {
        Literal::Null => "null".into(),
        Literal::Bool(b) => b.to_string(),
        Literal::Integer(i) => i.to_string(),
        Literal::Float(f) => format!("{f:?}"),
        Literal::String(s) => format!("{s:?}"),
    }
}

fn binop(op: BinaryOp) -> &'static str {
    use BinaryOp::*;
    match op {
        Or => "or",
        Xor => "xor",
        And => "and",
        Add => "+",
        Sub => "-",
        Mul => "*",
        Div => "/",
        Mod => "%",
        Pow => "^",
        In => "in",
        StartsWith => "starts-with",
        EndsWith => "ends-with",
        Contains => "contains",
        RegexMatch => "=~",
    }
}

fn cmpop(op: CompareOp) -> &'static str {
    use CompareOp::*;
    match op {
        Eq => "=",
        NotEq => "<>",
        Lt => "<",
        LtEq => "<=",
        Gt => ">",
        GtEq => ">=",
    }
}

fn node(n: &NodePattern) -> String {
    let mut s = "(".to_string();
    if let Some(v) = &n.variable {
        s += &v.name;
    }
    for l in &n.labels {
        s += &format!(":{}", l.name);
    }
    if let Some(p) = &n.properties {
        s += &format!(" {}", sexp(p));
    }
    s + ")"
}

fn rel(r: &RelPattern) -> String {
    let mut inner = String::new();
    if let Some(v) = &r.variable {
        inner += &v.name;
    }
    if !r.types.is_empty() {
        inner += ":";
        inner += &r
            .types
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join("|");
    }
    if let Some((lo, hi)) = r.length {
        let f = |x: Option<u64>| x.map_or(String::new(), |x| x.to_string());
        inner += &format!("*{}..{}", f(lo), f(hi));
    }
    if let Some(p) = &r.properties {
        inner += &format!(" {}", sexp(p));
    }
    match r.direction {
        Direction::Outgoing => format!("-[{inner}]->"),
        Direction::Incoming => format!("<-[{inner}]-"),
        Direction::Both => format!("-[{inner}]-"),
    }
}

fn pattern(p: &PatternElement) -> String {
    let mut s = node(&p.start);
    for (r, n) in &p.chain {
        s += &rel(r);
        s += &node(n);
    }
    s
}

fn part(p: &PatternPart) -> String {
    let mut s = String::new();
    if let Some(v) = &p.variable {
        s += &format!("{} = ", v.name);
    }
    match p.kind {
        PatternKind::Plain => s + &pattern(&p.element),
        PatternKind::ShortestPath => s + &format!("shortestPath({})", pattern(&p.element)),
        PatternKind::AllShortestPaths => s + &format!("allShortestPaths({})", pattern(&p.element)),
    }
}

fn match_pattern(q: &str) -> Vec<String> {
    first_match(q).pattern.iter().map(part).collect()
}

// ---------------------------------------------------------------------------------------------
// Expressions: precedence
// ---------------------------------------------------------------------------------------------

#[test]
fn arithmetic_precedence() {
    assert_eq!(e("1 + 2 * 3 ^ 2"), "(+ 1 (* 2 (^ 3 2)))");
    assert_eq!(e("1 - 2 - 3"), "(- (- 1 2) 3)");
    assert_eq!(e("8 / 4 * 2 % 3"), "(% (* (/ 8 4) 2) 3)");
    assert_eq!(e("2 ^ 3 ^ 2"), "(^ (^ 2 3) 2)");
    assert_eq!(e("(1 + 2) * 3"), "(* (+ 1 2) 3)");
    // Unary minus binds tighter than ^; a minus on a number literal is folded into it.
    assert_eq!(e("-2 ^ 2"), "(^ -2 2)");
    assert_eq!(e("- a ^ 2"), "(^ (neg a) 2)");
    assert_eq!(e("-a.b"), "(neg (. a b))");
    assert_eq!(e("+a - -b"), "(- (plus a) (neg b))");
    assert_eq!(e("- -1"), "1");
    assert_eq!(e("-1.5"), "-1.5");
}

#[test]
fn boolean_precedence() {
    assert_eq!(e("NOT a = b OR c"), "(or (not (cmp a = b)) c)");
    assert_eq!(e("a OR b XOR c AND d"), "(or a (xor b (and c d)))");
    assert_eq!(e("a AND NOT b AND c"), "(and (and a (not b)) c)");
    assert_eq!(e("NOT NOT a"), "(not (not a))");
    assert_eq!(e("a = 1 AND b <> 2"), "(and (cmp a = 1) (cmp b <> 2))");
    assert_eq!(e("a != b"), "(cmp a <> b)");
}

#[test]
fn comparison_chains() {
    assert_eq!(e("a < b < c"), "(cmp a < b < c)");
    assert_eq!(e("1 <= x < 10 = true"), "(cmp 1 <= x < 10 = true)");
    assert_eq!(e("(a < b) < c"), "(cmp (cmp a < b) < c)");
    assert_eq!(e("a > b AND c >= d"), "(and (cmp a > b) (cmp c >= d))");
    assert_eq!(e("a + 1 < b * 2"), "(cmp (+ a 1) < (* b 2))");
}

#[test]
fn string_list_and_null_predicates() {
    assert_eq!(e("x IN [1, 2] + [3]"), "(in x (+ [1 2] [3]))");
    assert_eq!(
        e("a STARTS WITH 'x' OR a ENDS WITH 'y'"),
        r#"(or (starts-with a "x") (ends-with a "y"))"#
    );
    assert_eq!(e("a CONTAINS b = true"), "(cmp (contains a b) = true)");
    assert_eq!(e("name =~ 'a.*'"), r#"(=~ name "a.*")"#);
    assert_eq!(e("a + b IS NULL"), "(is-null (+ a b))");
    assert_eq!(
        e("a IS NOT NULL AND b IS NULL"),
        "(and (is-not-null a) (is-null b))"
    );
    assert_eq!(e("NOT a IS NULL"), "(not (is-null a))");
    assert_eq!(e("a = b IS NULL"), "(cmp a = (is-null b))");
    assert_eq!(
        e("starts_with STARTS  WITH  x"),
        "(starts-with starts_with x)"
    );
}

#[test]
fn postfix_operators() {
    assert_eq!(e("n.a.b"), "(. (. n a) b)");
    assert_eq!(e("l[0]"), "(idx l 0)");
    assert_eq!(e("l[1..3]"), "(slice l 1 3)");
    assert_eq!(e("l[..3]"), "(slice l _ 3)");
    assert_eq!(e("l[1..]"), "(slice l 1 _)");
    assert_eq!(e("l[..]"), "(slice l _ _)");
    assert_eq!(e("l[-1]"), "(idx l -1)");
    assert_eq!(e("n.list[0].x"), "(. (idx (. n list) 0) x)");
    assert_eq!(e("n:Person"), "(labels n Person)");
    assert_eq!(e("n:A:B"), "(labels n A B)");
    assert_eq!(e("n : Person"), "(labels n Person)");
    assert_eq!(e("n . name"), "(. n name)");
    assert_eq!(e("[1, 2][0]"), "(idx [1 2] 0)");
    assert_eq!(e("{a: 1}.a"), "(. {a: 1} a)");
}

// ---------------------------------------------------------------------------------------------
// Expressions: atoms
// ---------------------------------------------------------------------------------------------

#[test]
fn number_literals() {
    assert_eq!(e("42"), "42");
    assert_eq!(e("0x1F"), "31");
    assert_eq!(e("0XfF"), "255");
    assert_eq!(e("0o17"), "15");
    assert_eq!(e("1.5"), "1.5");
    assert_eq!(e("1e3"), "1000.0");
    assert_eq!(e("1E-3"), "0.001");
    assert_eq!(e(".5"), "0.5");
    assert_eq!(e(".5e1"), "5.0");
    assert_eq!(e("2.5e+2"), "250.0");
    assert_eq!(e("9223372036854775807"), "9223372036854775807");
    assert_eq!(e("-9223372036854775808"), "-9223372036854775808");
    assert_eq!(e("-0x10"), "-16");
}

#[test]
fn number_literal_errors() {
    let x = err("RETURN 9223372036854775808");
    assert_eq!((x.line, x.column), (1, 8));
    assert!(x.message.contains("out of range"), "{x}");
    let x = err("RETURN 1 + 0xFFFFFFFFFFFFFFFFFFFF");
    assert_eq!(x.column, 12);
    assert!(x.message.contains("out of range"));
    assert!(
        err("RETURN 99999999999999999999999999999999999999999999")
            .message
            .contains("out of range")
    );
    assert!(
        err("RETURN 9223372036854775808 + 1")
            .message
            .contains("out of range")
    );
    assert!(err("RETURN 1e999").message.contains("out of range"));
    assert!(
        err("RETURN -(9223372036854775808)")
            .message
            .contains("out of range")
    );
}

#[test]
fn string_literals() {
    assert_eq!(e("'abc'"), r#""abc""#);
    assert_eq!(e(r#""dq""#), r#""dq""#);
    assert_eq!(e(r#"'it\'s'"#), r#""it's""#);
    assert_eq!(e(r#""say \"hi\"""#), r#""say \"hi\"""#);
    assert_eq!(e(r#"'a"b'"#), r#""a\"b""#);
    assert_eq!(e(r#"'\\ \n \t \r \b \f'"#), r#""\\ \n \t \r \u{8} \u{c}""#);
    assert_eq!(e(r#"'\u00e9\U0001F600'"#), r#""é😀""#);
    assert_eq!(e(r#"'\uD83D\uDE00'"#), r#""😀""#);
    assert_eq!(
        e("'multi\nline // not a comment'"),
        r#""multi\nline // not a comment""#
    );
    assert_eq!(e("''"), r#""""#);
}

#[test]
fn string_literal_errors() {
    let x = err(r"RETURN 'ab\qc'");
    assert_eq!(x.column, 11);
    assert!(x.message.contains("invalid escape sequence \\q"), "{x}");
    let x = err(r"RETURN 'x\u12'");
    assert!(x.message.contains("4 hex digits"), "{x}");
    let x = err(r"RETURN '\uD800'");
    assert!(x.message.contains("not a character"), "{x}");
    let x = err("RETURN 'unterminated");
    assert_eq!(x.column, 8);
}

#[test]
fn literals_parameters_lists_maps() {
    assert_eq!(e("null"), "null");
    assert_eq!(e("TRUE"), "true");
    assert_eq!(e("false"), "false");
    assert_eq!(e("$name"), "$name");
    assert_eq!(e("$0"), "$0");
    assert_eq!(e("$`odd name`"), "$odd name");
    assert_eq!(e("[]"), "[]");
    assert_eq!(e("[1, 'a', [2]]"), r#"[1 "a" [2]]"#);
    assert_eq!(e("{}"), "{}");
    assert_eq!(e("{a: 1, `b c`: [2]}"), "{a: 1, b c: [2]}");
    // Keywords are valid map keys and property keys.
    assert_eq!(
        e("{limit: 1, match: 2, count: 3}"),
        "{limit: 1, match: 2, count: 3}"
    );
    assert_eq!(
        e("n.count + n.limit + n.return"),
        "(+ (+ (. n count) (. n limit)) (. n return))"
    );
    assert_eq!(e("[0.1, 0.2, -0.3]"), "[0.1 0.2 -0.3]");
}

#[test]
fn functions() {
    assert_eq!(e("count(*)"), "count(*)");
    assert_eq!(e("COUNT ( * )"), "count(*)");
    assert_eq!(e("count(n)"), "(count n)");
    assert_eq!(e("count(DISTINCT n.name)"), "(count distinct (. n name))");
    assert_eq!(e("coalesce(a, b, 1)"), "(coalesce a b 1)");
    assert_eq!(e("rand()"), "(rand)");
    assert_eq!(e("exists(n.prop)"), "(exists (. n prop))");
    assert_eq!(e("date.truncate('day', d)"), r#"(date.truncate "day" d)"#);
    assert_eq!(e("`my fn`(1)"), "(my fn 1)");
    assert_eq!(e("length(p) > 1"), "(cmp (length p) > 1)");
    // `count` is not reserved: it can be a variable.
    assert_eq!(e("count + 1"), "(+ count 1)");
}

#[test]
fn case_expressions() {
    assert_eq!(
        e("CASE WHEN a > 1 THEN 'big' WHEN a = 1 THEN 'one' ELSE 'small' END"),
        r#"(case (when (cmp a > 1) "big") (when (cmp a = 1) "one") (else "small"))"#
    );
    assert_eq!(
        e("case n.x when 1 then 'a' end"),
        r#"(case (. n x) (when 1 "a"))"#
    );
    assert_eq!(
        e("CASE WHEN CASE x WHEN 1 THEN true END THEN 1 END"),
        "(case (when (case x (when 1 true)) 1))"
    );
    assert!(
        err("RETURN CASE END")
            .expected
            .contains(&"WHEN".to_string())
    );
}

#[test]
fn list_comprehensions() {
    assert_eq!(
        e("[x IN l WHERE x > 1 | x * 2]"),
        "(comp x l (cmp x > 1) (* x 2))"
    );
    assert_eq!(e("[x IN l WHERE x > 1]"), "(comp x l (cmp x > 1) _)");
    assert_eq!(e("[x IN range(1, 3) | x]"), "(comp x (range 1 3) _ x)");
    assert_eq!(e("[x IN l]"), "(comp x l _ _)");
    assert_eq!(e("[(x IN l), 2]"), "[(in x l) 2]");
    assert_eq!(e("[1 IN l, 2]"), "[(in 1 l) 2]");
}

#[test]
fn quantifiers() {
    assert_eq!(e("all(x IN l WHERE x > 0)"), "(all x l (cmp x > 0))");
    assert_eq!(e("ANY(x IN l WHERE x = 1)"), "(any x l (cmp x = 1))");
    assert_eq!(e("none(x IN [1] WHERE false)"), "(none x [1] false)");
    assert_eq!(e("single(x IN l WHERE x)"), "(single x l x)");
    // Not followed by `var IN`: an ordinary function / variable.
    assert_eq!(e("any(l)"), "(any l)");
    assert_eq!(e("single + none"), "(+ single none)");
    let x = err("RETURN any(x IN l)");
    assert!(x.message.contains("requires a WHERE"), "{x}");
    assert_eq!(x.column, 8);
}

#[test]
fn pattern_predicates() {
    assert_eq!(e("(a)-->(b)"), "(pattern (a)-[]->(b))");
    assert_eq!(
        e("(a)<-[:T]-(:L {x: 1})"),
        "(pattern (a)<-[:T]-(:L {x: 1}))"
    );
    assert_eq!(e("(a:L)--()"), "(pattern (a:L)-[]-())");
    assert_eq!(
        e("(a {x: 1})-[r*2]->(b)"),
        "(pattern (a {x: 1})-[r*2..2]->(b))"
    );
    assert_eq!(e("(:L)-->(b)"), "(pattern (:L)-[]->(b))");
    assert_eq!(e("()-->()"), "(pattern ()-[]->())");
    assert_eq!(e("({k: 1})-->()"), "(pattern ( {k: 1})-[]->())");
    assert_eq!(e("NOT (a)-->(b)"), "(not (pattern (a)-[]->(b)))");
    assert_eq!(e("exists((a)-->())"), "(exists (pattern (a)-[]->()))");
    // Arithmetic with parentheses is not a pattern.
    assert_eq!(e("(a) - (b)"), "(- a b)");
    assert_eq!(e("(a) < -(b)"), "(cmp a < (neg b))");
    assert_eq!(e("(a) - [1]"), "(- a [1])");
    let m = first_match("MATCH (a), (b) WHERE (a)-[:KNOWS]->(b) AND NOT (b)-->(a) RETURN a");
    assert_eq!(
        sexp(&m.where_.unwrap()),
        "(and (pattern (a)-[:KNOWS]->(b)) (not (pattern (b)-[]->(a))))"
    );
    let x = err("RETURN (1)-->(b)");
    assert!(x.message.contains("node pattern"), "{x}");
}

// ---------------------------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------------------------

#[test]
fn relationship_forms() {
    let cases = [
        ("(a)-->(b)", "(a)-[]->(b)"),
        ("(a)<--(b)", "(a)<-[]-(b)"),
        ("(a)--(b)", "(a)-[]-(b)"),
        ("(a)<-->(b)", "(a)-[]-(b)"),
        ("(a)-[r]->(b)", "(a)-[r]->(b)"),
        ("(a)<-[r:T]-(b)", "(a)<-[r:T]-(b)"),
        ("(a)-[:T|U]-(b)", "(a)-[:T|U]-(b)"),
        ("(a)-[:T|:U]->(b)", "(a)-[:T|U]->(b)"),
        (
            "(a)-[r:T|U*1..3 {p: 1}]->(b)",
            "(a)-[r:T|U*1..3 {p: 1}]->(b)",
        ),
        ("(a)-[*]->(b)", "(a)-[*..]->(b)"),
        ("(a)-[*2]->(b)", "(a)-[*2..2]->(b)"),
        ("(a)-[*1..3]->(b)", "(a)-[*1..3]->(b)"),
        ("(a)-[*..3]->(b)", "(a)-[*..3]->(b)"),
        ("(a)-[*2..]->(b)", "(a)-[*2..]->(b)"),
        ("(a)-[*0..1]->(b)", "(a)-[*0..1]->(b)"),
        ("(a)-[ * 1 .. 3 ]->(b)", "(a)-[*1..3]->(b)"),
        ("(a)-[r $props]->(b)", "(a)-[r $props]->(b)"),
        ("(a) - [ r ] - > (b)", "(a)-[r]->(b)"),
        ("(a)-->(b)<--(c)--(d)", "(a)-[]->(b)<-[]-(c)-[]-(d)"),
    ];
    for (q, want) in cases {
        assert_eq!(
            match_pattern(&format!("MATCH {q} RETURN 1")),
            vec![want],
            "{q}"
        );
    }
}

#[test]
fn malformed_ranges() {
    let x = err("MATCH (a)-[*5..2]->(b) RETURN a");
    assert_eq!((x.line, x.column), (1, 12));
    assert!(x.message.contains("*5..2"), "{x}");
    assert!(
        err("MATCH (a)-[*99999999999999999999999]->(b) RETURN a")
            .message
            .contains("out of range")
    );
}

#[test]
fn node_patterns_and_parts() {
    assert_eq!(
        match_pattern("MATCH (n:Person:Admin {name: 'x', age: $age}), (m), () RETURN n"),
        vec!["(n:Person:Admin {name: \"x\", age: $age})", "(m)", "()"]
    );
    assert_eq!(match_pattern("MATCH (n $p) RETURN n"), vec!["(n $p)"]);
    assert_eq!(
        match_pattern("MATCH (n: `Weird Label`) RETURN n"),
        vec!["(n:Weird Label)"]
    );
    // Keywords can be labels and relationship types.
    assert_eq!(
        match_pattern("MATCH (n:Match)-[:RETURN]->(m:Limit) RETURN n"),
        vec!["(n:Match)-[:RETURN]->(m:Limit)"]
    );
    assert_eq!(
        match_pattern("MATCH p = (a)-->(b) RETURN p"),
        vec!["p = (a)-[]->(b)"]
    );
    assert_eq!(
        match_pattern("MATCH p=((a)-->(b)) RETURN p"),
        vec!["p = (a)-[]->(b)"]
    );
    assert_eq!(
        match_pattern("MATCH p = shortestPath((a:P {name:'vim'})-[:D*..6]->(b)) RETURN length(p)"),
        vec!["p = shortestPath((a:P {name: \"vim\"})-[:D*..6]->(b))"]
    );
    assert_eq!(
        match_pattern("MATCH p = ALLSHORTESTPATHS((a)-[*]-(b)), q = (c) RETURN p"),
        vec!["p = allShortestPaths((a)-[*..]-(b))", "q = (c)"]
    );
    let m = first_match("MATCH (a)-[r:T]->(b) RETURN a");
    let el = &m.pattern[0];
    assert_eq!(el.span, Span::new(6, 20));
    assert_eq!(el.element.start.span, Span::new(6, 9));
    assert_eq!(el.element.chain[0].0.span, Span::new(9, 17));
    assert_eq!(el.element.chain[0].1.span, Span::new(17, 20));
    assert_eq!(
        el.element.chain[0].0.variable.as_ref().unwrap().span,
        Span::new(11, 12)
    );
}

// ---------------------------------------------------------------------------------------------
// Clauses
// ---------------------------------------------------------------------------------------------

#[test]
fn match_where_return() {
    let c = clauses("OPTIONAL MATCH (n:Package) WHERE n.size > 10 RETURN n.name AS name");
    let Clause::Match(m) = &c[0] else { panic!() };
    assert!(m.optional);
    assert_eq!(sexp(m.where_.as_ref().unwrap()), "(cmp (. n size) > 10)");
    assert_eq!(m.span, Span::new(0, 44));
    let Clause::Return(r) = &c[1] else { panic!() };
    assert_eq!(r.items[0].alias.as_ref().unwrap().name, "name");
    assert_eq!(r.items[0].text, "n.name");
    assert!(!first_match("MATCH (n) RETURN n").optional);
    assert_eq!(
        clauses("MATCH (a) MATCH (b) OPTIONAL MATCH (c) RETURN *").len(),
        4
    );
}

#[test]
fn return_variants() {
    let r = ret("RETURN DISTINCT a, b.c AS d ORDER BY a DESC, d ASCENDING, e SKIP 1 LIMIT $n");
    assert!(r.distinct);
    assert!(!r.star);
    assert_eq!(r.items.len(), 2);
    let order: Vec<_> = r
        .order_by
        .iter()
        .map(|s| (sexp(&s.expr), s.descending))
        .collect();
    assert_eq!(
        order,
        vec![("a".into(), true), ("d".into(), false), ("e".into(), false)]
    );
    assert_eq!(sexp(r.skip.as_ref().unwrap()), "1");
    assert_eq!(sexp(r.limit.as_ref().unwrap()), "$n");
    let r = ret("MATCH (n) RETURN *");
    assert!(r.star && r.items.is_empty());
    let r = ret("MATCH (n) RETURN *, n.x AS x");
    assert!(r.star && r.items.len() == 1);
    let r = ret("RETURN 1 ORDER BY 1 ASC, 2 DESCENDING");
    assert_eq!(
        r.order_by.iter().map(|s| s.descending).collect::<Vec<_>>(),
        vec![false, true]
    );
}

#[test]
fn projection_item_text() {
    let r = ret("RETURN a.name ,  count( * )   AS c, a.x /* note */ + 1, `weird name`\n");
    let texts: Vec<_> = r.items.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(
        texts,
        vec!["a.name", "count( * )", "a.x /* note */ + 1", "`weird name`"]
    );
    assert_eq!(r.items[1].span, Span::new(17, 34));
    let r = ret("RETURN n.x // trailing comment\n");
    assert_eq!(r.items[0].text, "n.x");
    assert_eq!(r.items[0].expr.span, Span::new(7, 10));
}

#[test]
fn with_clause() {
    let c = clauses(
        "MATCH (n) WITH DISTINCT n.x AS x, count(*) AS c ORDER BY c DESC SKIP 2 LIMIT 10 \
         WHERE c > 1 RETURN x",
    );
    let Clause::With(w) = &c[1] else { panic!() };
    assert!(w.distinct);
    assert_eq!(w.items.len(), 2);
    assert_eq!(w.order_by.len(), 1);
    assert!(w.skip.is_some() && w.limit.is_some());
    assert_eq!(sexp(w.where_.as_ref().unwrap()), "(cmp c > 1)");
    let c = clauses("WITH * MATCH (n) WITH n RETURN n");
    assert!(matches!(&c[0], Clause::With(w) if w.star));
    assert_eq!(c.len(), 4);
}

#[test]
fn unwind() {
    let c = clauses("UNWIND [1, 2, 3] AS x UNWIND range(1, x) AS y RETURN x, y");
    let Clause::Unwind(u) = &c[0] else { panic!() };
    assert_eq!(sexp(&u.expr), "[1 2 3]");
    assert_eq!(u.alias.name, "x");
    assert_eq!(u.span, Span::new(0, 21));
}

#[test]
fn create_merge_set_remove_delete() {
    let c = clauses("CREATE (:Package {id: 1})-[:DEPENDS]->(:Package {id: 2}), (x)");
    let Clause::Create(cr) = &c[0] else { panic!() };
    assert_eq!(
        cr.pattern.iter().map(part).collect::<Vec<_>>(),
        vec!["(:Package {id: 1})-[:DEPENDS]->(:Package {id: 2})", "(x)"]
    );

    let c = clauses(
        "MERGE (n:P {id: 1}) ON CREATE SET n.created = 1, n.x = 2 ON MATCH SET n.seen = true \
         ON CREATE SET n += {a: 1} RETURN n",
    );
    let Clause::Merge(m) = &c[0] else { panic!() };
    assert_eq!(part(&m.pattern), "(n:P {id: 1})");
    assert_eq!(m.on_create.len(), 3);
    assert_eq!(m.on_match.len(), 1);

    let c = clauses("MATCH (n) SET n.a = 1, n.b.c = 2, n = {x: 1}, n += $p, n:A:B, n :C");
    let Clause::Set(s) = &c[1] else { panic!() };
    let kinds: Vec<String> = s
        .items
        .iter()
        .map(|i| match i {
            SetItem::Property { target, value } => format!("prop {} {}", sexp(target), sexp(value)),
            SetItem::Replace { variable, value } => {
                format!("replace {} {}", variable.name, sexp(value))
            }
            SetItem::Merge { variable, value } => {
                format!("merge {} {}", variable.name, sexp(value))
            }
            SetItem::Labels { variable, labels } => format!(
                "labels {} {}",
                variable.name,
                labels
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "prop (. n a) 1",
            "prop (. (. n b) c) 2",
            "replace n {x: 1}",
            "merge n $p",
            "labels n A,B",
            "labels n C"
        ]
    );

    let c = clauses("MATCH (n) REMOVE n.a, n:A:B RETURN n");
    let Clause::Remove(r) = &c[1] else { panic!() };
    assert!(matches!(&r.items[0], RemoveItem::Property(p) if sexp(p) == "(. n a)"));
    assert!(matches!(&r.items[1], RemoveItem::Labels { labels, .. } if labels.len() == 2));

    let c = clauses("MATCH (n)-[r]->() DELETE r, n");
    let Clause::Delete(d) = &c[1] else { panic!() };
    assert!(!d.detach);
    assert_eq!(d.exprs.len(), 2);
    let c = clauses("MATCH (n) DETACH DELETE n");
    assert!(matches!(&c[1], Clause::Delete(d) if d.detach));
    assert_eq!(clauses("MATCH (n) SET n.x = 1 RETURN n").len(), 3);
    assert_eq!(
        clauses("MATCH (a) CREATE (b) WITH a, b MATCH (c) DELETE c").len(),
        5
    );
}

#[test]
fn clause_order_is_enforced() {
    // A query must end with RETURN or an updating clause.
    let x = err("MATCH (n)");
    assert!(x.expected.contains(&"RETURN".to_string()), "{x}");
    // Reading after updating needs WITH.
    let x = err("CREATE (n) MATCH (m) RETURN m");
    assert_eq!(x.column, 12);
    // Nothing after RETURN except UNION / end.
    let x = err("RETURN 1 MATCH (n) RETURN n");
    assert_eq!(x.column, 10);
}

#[test]
fn union() {
    let q =
        query("MATCH (a) RETURN a.x AS x UNION ALL MATCH (b) RETURN b.x AS x UNION RETURN 1 AS x");
    assert_eq!(q.parts.len(), 3);
    assert_eq!(q.union_all, vec![true, false]);
}

#[test]
fn vector_similar_to() {
    let c = clauses(
        "MATCH (p:Package)-[:DEPENDS]->(:Package {name: 'libssl3'})\n  \
         VECTOR SIMILAR TO $q ON p.embedding LIMIT 10\n  \
         RETURN p.name, similarity_score ORDER BY similarity_score DESC",
    );
    assert_eq!(c.len(), 3);
    let Clause::VectorSimilar(v) = &c[1] else {
        panic!()
    };
    assert_eq!(sexp(&v.query), "$q");
    let (var, prop) = v.on.as_ref().unwrap();
    assert_eq!((var.name.as_str(), prop.name.as_str()), ("p", "embedding"));
    assert_eq!(v.metric, None);
    assert_eq!(sexp(&v.limit), "10");
    assert!(v.threshold.is_none());

    let c = clauses(
        "MATCH (u:User)-[:OWNS]->(doc:Document) WHERE u.id = 1 \
         vector similar to u.embedding on doc.embedding metric L2 limit 5 threshold 0.8 \
         RETURN doc.title, similarity_score",
    );
    let Clause::Match(m) = &c[0] else { panic!() };
    assert!(m.where_.is_some());
    let Clause::VectorSimilar(v) = &c[1] else {
        panic!()
    };
    assert_eq!(sexp(&v.query), "(. u embedding)");
    assert_eq!(v.metric, Some(Metric::L2));
    assert_eq!(sexp(v.threshold.as_ref().unwrap()), "0.8");

    let c = clauses(
        "MATCH (d:Doc) WITH d WHERE d.lang = 'en' VECTOR SIMILAR TO [0.1, -0.2, 3e-1] \
         METRIC dot LIMIT $k RETURN d",
    );
    let Clause::VectorSimilar(v) = &c[2] else {
        panic!()
    };
    assert_eq!(sexp(&v.query), "[0.1 -0.2 0.3]");
    assert_eq!(v.metric, Some(Metric::Dot));
    assert!(v.on.is_none());
    let c = clauses("MATCH (d) VECTOR SIMILAR TO $q METRIC COSINE LIMIT 1 RETURN d");
    assert!(matches!(&c[1], Clause::VectorSimilar(v) if v.metric == Some(Metric::Cosine)));

    let x = err("MATCH (d) VECTOR SIMILAR TO $q RETURN d");
    assert!(x.expected.contains(&"LIMIT".to_string()), "{x}");
    let x = err("MATCH (d) VECTOR SIMILAR TO $q METRIC manhattan LIMIT 1 RETURN d");
    assert!(
        x.expected.contains(&"metric (cosine, l2, dot)".to_string()),
        "{x}"
    );
    // Only after MATCH or WITH.
    assert!(parse("RETURN 1 VECTOR SIMILAR TO $q LIMIT 1").is_err());
    assert!(parse("UNWIND [1] AS x VECTOR SIMILAR TO $q LIMIT 1 RETURN x").is_err());
}

#[test]
fn prefixes_explain_and_time_travel() {
    let s = stmt("EXPLAIN MATCH (n) RETURN n");
    assert_eq!(s.explain, Some(Explain::Plan));
    assert_eq!(s.at, None);
    let s = stmt("explain analyze AT SNAPSHOT 42 MATCH (n:Package) RETURN count(*)");
    assert_eq!(s.explain, Some(Explain::Analyze));
    assert_eq!(s.at, Some(TimeTravel::Snapshot(42)));
    let s = stmt("AT SNAPSHOT -7302 RETURN 1");
    assert_eq!(s.at, Some(TimeTravel::Snapshot(-7302)));
    let s = stmt("AT TIMESTAMP '2026-01-01T00:00:00Z' MATCH (n) RETURN n");
    assert_eq!(
        s.at,
        Some(TimeTravel::Timestamp("2026-01-01T00:00:00Z".into()))
    );
    let s = stmt("EXPLAIN CREATE NODE TABLE T (id INT PRIMARY KEY)");
    assert_eq!(s.explain, Some(Explain::Plan));
    let x = err("AT SNAPSHOT 1 DROP NODE TABLE T");
    assert!(x.message.contains("only to queries"), "{x}");
    let x = err("AT SNAPSHOT 99999999999999999999 RETURN 1");
    assert!(x.message.contains("out of range"), "{x}");
    let x = err("AT SNAPSHOT x RETURN 1");
    assert_eq!(x.expected, vec!["integer"]);
}

// ---------------------------------------------------------------------------------------------
// DDL and COPY
// ---------------------------------------------------------------------------------------------

fn node_table(q: &str) -> CreateNodeTable {
    match stmt(q).body {
        StatementBody::CreateNodeTable(t) => t,
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_node_table() {
    let t = node_table(
        "CREATE NODE TABLE Package (id BIGINT PRIMARY KEY, name VARCHAR, embedding VECTOR(384))",
    );
    assert_eq!(t.name.name, "Package");
    assert!(!t.if_not_exists);
    assert_eq!(t.primary_key.as_ref().unwrap().name, "id");
    let cols: Vec<_> = t
        .columns
        .iter()
        .map(|c| (c.name.name.as_str(), c.data_type.clone(), c.primary_key))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("id", DataType::Int64, true),
            ("name", DataType::String, false),
            ("embedding", DataType::Vector(384), false)
        ]
    );
    let t = node_table(
        "create node table if not exists `My Table` (name STRING, id INT64, PRIMARY KEY (id))",
    );
    assert!(t.if_not_exists);
    assert_eq!(t.name.name, "My Table");
    assert_eq!(t.primary_key.as_ref().unwrap().name, "id");
    assert!(t.columns[1].primary_key);
    let t = node_table("CREATE NODE TABLE T (x INT)");
    assert!(t.primary_key.is_none());
}

#[test]
fn data_types() {
    let cases = [
        ("BOOLEAN", DataType::Boolean),
        ("bool", DataType::Boolean),
        ("TINYINT", DataType::Int32),
        ("SMALLINT", DataType::Int32),
        ("INT", DataType::Int32),
        ("INTEGER", DataType::Int32),
        ("INT32", DataType::Int32),
        ("BIGINT", DataType::Int64),
        ("INT64", DataType::Int64),
        ("FLOAT", DataType::Float32),
        ("REAL", DataType::Float32),
        ("FLOAT32", DataType::Float32),
        ("DOUBLE", DataType::Float64),
        ("FLOAT64", DataType::Float64),
        ("STRING", DataType::String),
        ("VARCHAR", DataType::String),
        ("TEXT", DataType::String),
        ("DATE", DataType::Date),
        ("TIMESTAMP", DataType::Timestamp),
        ("VECTOR(3)", DataType::Vector(3)),
        ("vector ( 1536 )", DataType::Vector(1536)),
        ("FLOAT[8]", DataType::Vector(8)),
        ("STRING[]", DataType::List(Box::new(DataType::String))),
        ("FLOAT[]", DataType::List(Box::new(DataType::Float32))),
        (
            "INT[][]",
            DataType::List(Box::new(DataType::List(Box::new(DataType::Int32)))),
        ),
        ("FLOAT[3][]", DataType::List(Box::new(DataType::Vector(3)))),
    ];
    for (ty, want) in cases {
        let t = node_table(&format!("CREATE NODE TABLE T (c {ty})"));
        assert_eq!(t.columns[0].data_type, want, "{ty}");
    }
    for bad in ["VECTOR(0)", "FLOAT[0]", "VECTOR(4294967296)"] {
        let q = format!("CREATE NODE TABLE T (c {bad})");
        let x = err(&q);
        assert!(x.message.contains("vector dimension"), "{bad}: {x}");
        assert_eq!(
            x.offset,
            q.find(|c: char| c.is_ascii_digit()).unwrap(),
            "{bad}"
        );
    }
    let x = err("CREATE NODE TABLE T (id INTEGR)");
    assert_eq!(
        (x.column, x.expected.clone()),
        (25, vec!["type".to_string()])
    );
    assert!(parse("CREATE NODE TABLE T (c INTX)").is_err());
}

#[test]
fn node_table_errors() {
    let x = err("CREATE NODE TABLE T (a INT PRIMARY KEY, b INT PRIMARY KEY)");
    assert!(x.message.contains("only one PRIMARY KEY"), "{x}");
    let x = err("CREATE NODE TABLE T (a INT, PRIMARY KEY (b))");
    assert!(x.message.contains("`b` is not defined"), "{x}");
    assert_eq!(x.column, 42);
    let x = err("CREATE NODE TABLE T (a INT, a STRING)");
    assert!(x.message.contains("defined twice"), "{x}");
    assert!(parse("CREATE NODE TABLE T ()").is_err());
}

#[test]
fn create_edge_table() {
    let StatementBody::CreateEdgeTable(t) =
        stmt("CREATE EDGE TABLE DEPENDS (FROM Package TO Package)").body
    else {
        panic!()
    };
    assert_eq!(t.name.name, "DEPENDS");
    assert_eq!(t.endpoints.len(), 1);
    assert!(t.columns.is_empty());
    let StatementBody::CreateEdgeTable(t) = stmt(
        "CREATE EDGE TABLE IF NOT EXISTS OWNS (FROM User TO Doc, FROM Team TO Doc, since DATE, \
         weight DOUBLE, from_id INT)",
    )
    .body
    else {
        panic!()
    };
    assert!(t.if_not_exists);
    let ends: Vec<_> = t
        .endpoints
        .iter()
        .map(|(a, b)| format!("{}->{}", a.name, b.name))
        .collect();
    assert_eq!(ends, vec!["User->Doc", "Team->Doc"]);
    assert_eq!(t.columns.len(), 3);
    assert_eq!(t.columns[1].data_type, DataType::Float64);
    let x = err("CREATE EDGE TABLE E (FROM A TO B, w INT PRIMARY KEY)");
    assert!(x.message.contains("no PRIMARY KEY"), "{x}");
    assert!(parse("CREATE EDGE TABLE E (w INT)").is_err());
}

#[test]
fn vector_index_and_drop() {
    let StatementBody::CreateVectorIndex(ix) = stmt(
        "CREATE VECTOR INDEX package_embedding ON Package(embedding) \
         WITH (metric = 'cosine', m = 16, ef = -1.5, exact = false, x = null)",
    )
    .body
    else {
        panic!()
    };
    assert_eq!(ix.name.name, "package_embedding");
    assert_eq!(ix.label.name, "Package");
    assert_eq!(ix.property.name, "embedding");
    assert_eq!(
        ix.options,
        vec![
            ("metric".into(), Literal::String("cosine".into())),
            ("m".into(), Literal::Integer(16)),
            ("ef".into(), Literal::Float(-1.5)),
            ("exact".into(), Literal::Bool(false)),
            ("x".into(), Literal::Null),
        ]
    );
    let StatementBody::CreateVectorIndex(ix) = stmt("CREATE VECTOR INDEX i ON L (p)").body else {
        panic!()
    };
    assert!(ix.options.is_empty());

    let cases = [
        ("DROP NODE TABLE T", ObjectKind::NodeTable, false),
        ("drop edge table if exists E", ObjectKind::EdgeTable, true),
        (
            "DROP VECTOR INDEX IF EXISTS i",
            ObjectKind::VectorIndex,
            true,
        ),
    ];
    for (q, kind, if_exists) in cases {
        let StatementBody::Drop(d) = stmt(q).body else {
            panic!()
        };
        assert_eq!((d.kind, d.if_exists), (kind, if_exists), "{q}");
    }
    let x = err("DROP TABLE T");
    assert_eq!(x.expected, vec!["NODE, EDGE or VECTOR"]);
    for q in ["SHOW INDEXES", "show vector indexes"] {
        assert_eq!(stmt(q).body, StatementBody::ShowIndexes, "{q}");
    }
    assert_eq!(err("SHOW VECTOR").expected, vec!["INDEXES"]);
}

#[test]
fn copy_from() {
    let StatementBody::Copy(c) = stmt("COPY Package FROM 'package.parquet'").body else {
        panic!()
    };
    assert_eq!(c.table.name, "Package");
    assert_eq!(c.path, "package.parquet");
    assert!(c.options.is_empty());
    let StatementBody::Copy(c) =
        stmt(r#"copy Package from "data/p\'s.parquet" (batch_size = 0x400, header = true)"#).body
    else {
        panic!()
    };
    assert_eq!(c.path, "data/p's.parquet");
    assert_eq!(c.options[0], ("batch_size".into(), Literal::Integer(1024)));
    assert!(parse("COPY Package FROM file.parquet").is_err());
}

// ---------------------------------------------------------------------------------------------
// Lexical matters
// ---------------------------------------------------------------------------------------------

#[test]
fn keywords_are_case_insensitive() {
    let a =
        stmt("match (n:Package) where n.x = 1 return distinct n.name order by n.name desc limit 3");
    let b =
        stmt("MaTcH (n:Package) WhErE n.x = 1 ReTuRn DiStInCt n.name OrDeR bY n.name DeSc LiMiT 3");
    assert_eq!(a, b);
    // A keyword prefix is not a keyword.
    assert_eq!(e("returned + matches"), "(+ returned matches)");
    assert_eq!(e("order_id"), "order_id");
}

#[test]
fn identifiers() {
    assert_eq!(e("`weird name`.`a b`"), "(. weird name a b)");
    assert_eq!(e("`a``b`"), "a`b");
    assert_eq!(e("`match`"), "match");
    assert_eq!(e("_x1 + été"), "(+ _x1 été)");
    let m = first_match("MATCH (`my node`) RETURN 1");
    let v = m.pattern[0].element.start.variable.clone().unwrap();
    assert_eq!((v.name.as_str(), v.span), ("my node", Span::new(7, 16)));
    // Reserved words are not variables.
    assert!(parse("MATCH (match) RETURN match").is_err());
    assert!(parse("RETURN 1 AS limit").is_err());
}

#[test]
fn comments() {
    let q = "// leading\nMATCH /* inline */ (n) // trailing\n/* multi\nline */ RETURN n /* end */";
    let s = stmt(q);
    assert_eq!(s.span, Span::new(11, q.len() - 10));
    assert_eq!(e("1 /* c */ + // x\n 2"), "(+ 1 2)");
    assert_eq!(e("a / /* c */ b"), "(/ a b)");
    assert!(parse("RETURN 1 /* unterminated").is_err());
}

// ---------------------------------------------------------------------------------------------
// Scripts and spans
// ---------------------------------------------------------------------------------------------

#[test]
fn scripts() {
    let text = "CREATE NODE TABLE T (id INT PRIMARY KEY);\n;; MATCH (n:T) RETURN n ;\nRETURN 1;";
    let s = parse(text).unwrap();
    assert_eq!(s.statements.len(), 3);
    let spans: Vec<&str> = s
        .statements
        .iter()
        .map(|s| &text[s.span.start..s.span.end])
        .collect();
    assert_eq!(
        spans,
        vec![
            "CREATE NODE TABLE T (id INT PRIMARY KEY)",
            "MATCH (n:T) RETURN n",
            "RETURN 1"
        ]
    );
    // Spans inside later statements are offsets into the whole text.
    let StatementBody::Query(q) = &s.statements[1].body else {
        panic!()
    };
    let Clause::Return(r) = &q.parts[0].clauses[1] else {
        panic!()
    };
    assert_eq!(&text[r.items[0].span.start..r.items[0].span.end], "n");
    assert_eq!(r.items[0].span.start, text.find("RETURN n").unwrap() + 7);

    assert!(parse("").unwrap().statements.is_empty());
    assert!(parse(" ;; ; // nothing\n").unwrap().statements.is_empty());
    assert_eq!(parse("RETURN 1;").unwrap().statements.len(), 1);
    assert!(parse("RETURN 1 RETURN 2").is_err());
}

#[test]
fn parse_statement_wants_one() {
    assert!(parse_statement("RETURN 1;").is_ok());
    let x = parse_statement("  ").unwrap_err();
    assert_eq!(x.found, "end of input");
    assert_eq!(x.expected, vec!["statement"]);
    let x = parse_statement("RETURN 1; RETURN 2").unwrap_err();
    assert_eq!(
        (x.column, x.message.as_str()),
        (11, "expected exactly one statement")
    );
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn error_position_expected_and_display() {
    let x = err("MATCH (n) RETRUN n");
    assert_eq!((x.line, x.column, x.offset), (1, 11, 10));
    assert_eq!(x.found, "RETRUN");
    for kw in ["RETURN", "WITH", "WHERE", "MATCH", "CREATE", "','"] {
        assert!(
            x.expected.contains(&kw.to_string()),
            "{kw} in {:?}",
            x.expected
        );
    }
    let shown = x.to_string();
    assert!(
        shown.starts_with("syntax error at line 1, column 11: expected one of "),
        "{shown}"
    );
    assert!(
        shown.contains(", found 'RETRUN'\nMATCH (n) RETRUN n\n          ^"),
        "{shown}"
    );
    assert_eq!(x.snippet, "MATCH (n) RETRUN n\n          ^");
}

#[test]
fn error_positions_on_later_lines() {
    let text = "RETURN 1;\nMATCH (n)\n  WHERE n.x = \n  RETURN n";
    let x = err(text);
    assert_eq!((x.line, x.column), (4, 3));
    assert_eq!(x.found, "RETURN");
    assert_eq!(x.expected, vec!["expression"]);
    assert_eq!(x.snippet, "  RETURN n\n  ^");
    assert_eq!(x.message, "expected expression, found 'RETURN'");

    let x = err("MATCH (n RETURN n");
    assert_eq!(x.column, 10);
    assert!(x.expected.contains(&"')'".to_string()), "{:?}", x.expected);

    let x = err("RETURN");
    assert_eq!((x.found.as_str(), x.column), ("end of input", 7));
    assert!(x.message.ends_with("found end of input"), "{}", x.message);
    // At the end of input the caret goes right after the last token, not on a blank line.
    let x = err("MATCH (n)\nRETURN n +  // done\n\n");
    assert_eq!(
        (x.line, x.column, x.found.as_str()),
        (2, 11, "end of input")
    );
    assert_eq!(x.snippet, "RETURN n +  // done\n          ^");

    let x = err("RETURN [1, 2");
    assert!(x.expected.contains(&"']'".to_string()), "{:?}", x.expected);
    let x = err("MATCH (a)-[r:]->(b) RETURN a");
    assert_eq!(x.expected, vec!["relationship type"]);
    let x = err("RETURN n.");
    assert_eq!(x.expected, vec!["property key"]);
    let x = err("MATCH (n) RETURN n.name AS");
    assert_eq!(x.expected, vec!["identifier"]);
}

#[test]
fn column_counts_characters() {
    let x = err("RETURN 'é' +");
    assert_eq!((x.column, x.offset), (13, 13));
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[test]
fn nesting_limit_is_reported_not_overflowed() {
    let deep = "(".repeat(100_000);
    let x = err(&format!("RETURN {deep}"));
    assert_eq!(
        x.message,
        format!("nesting deeper than {MAX_NESTING_DEPTH}")
    );
    assert_eq!(x.offset, 7 + MAX_NESTING_DEPTH);
    let x = err(&format!("RETURN {}1{}", "[".repeat(300), "]".repeat(300)));
    assert!(x.message.contains("nesting deeper"));
    let x = err(&format!("RETURN {}", "CASE WHEN true THEN ".repeat(300)));
    assert!(x.message.contains("nesting deeper"));
    // A map key `end` does not close a CASE; CASE nesting is still bounded.
    let q = format!(
        "RETURN {}1{}",
        "CASE WHEN {end: 1}.end THEN ".repeat(300),
        " END".repeat(300)
    );
    assert!(err(&q).message.contains("nesting deeper"));
    // Brackets inside strings and comments do not count.
    let q = format!("RETURN '{0}' /* {0} */ // {0}", "(".repeat(1000));
    assert!(parse(&q).is_ok());
}

#[test]
fn nesting_up_to_the_limit_parses() {
    let n = 200;
    let q = format!("RETURN {}1{}", "(".repeat(n), ")".repeat(n));
    assert_eq!(e(&q[7..]), "1");
    let q = format!("RETURN {}1{}", "[".repeat(n), "]".repeat(n));
    assert!(parse(&q).is_ok());
    let q = format!("RETURN {}1{}", "{a: ".repeat(n), "}".repeat(n));
    assert!(parse(&q).is_ok());
    let q = format!("RETURN {}1{}", "f(".repeat(n), ")".repeat(n));
    assert!(parse(&q).is_ok());
    let q = format!(
        "RETURN {} 1 {}",
        "CASE WHEN true THEN ".repeat(100),
        " END".repeat(100)
    );
    assert!(parse(&q).is_ok());
}

#[test]
fn long_operator_chains() {
    let ok = vec!["x = 1"; 400].join(" OR ");
    assert!(parse(&format!("MATCH (x) WHERE {ok} RETURN x")).is_ok());
    // Just under the limit: parses, and the deep tree is dropped on this (2 MiB) test thread.
    let deep = vec!["1"; 990].join(" + ");
    assert!(parse(&format!("RETURN {deep}")).is_ok());
    let many = vec!["1"; 5000].join(" + ");
    let x = err(&format!("RETURN {many}"));
    assert!(x.message.contains("expression nested deeper"), "{x}");
    let x = err(&format!("RETURN {}1", "NOT ".repeat(100_000)));
    assert!(x.message.contains("expression nested deeper"), "{x}");
    let x = err(&format!("RETURN {}1", "- ".repeat(100_000)));
    assert!(x.message.contains("expression nested deeper"), "{x}");
    let x = err(&format!("RETURN a{}", ".b".repeat(100_000)));
    assert!(x.message.contains("expression nested deeper"), "{x}");
    // Long flat lists are fine.
    let list = vec!["1.5"; 20_000].join(", ");
    assert!(parse(&format!("RETURN [{list}]")).is_ok());
}
