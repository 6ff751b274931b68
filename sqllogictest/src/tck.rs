//! The openCypher TCK runner: reads the Gherkin feature files, plays each scenario against a
//! fresh in-memory database and compares the results in the TCK's value notation.
//!
//! Steps understood: `Given an empty graph` / `Given any graph` (both start from a fresh
//! database), `having executed:` (setup queries), `parameters are:`, `executing query:` and
//! `executing control query:`, `the result should be[, in order|, in any order][ (ignoring
//! element order for lists)]:`, `the result should be empty`, `a <Error> should be raised at
//! <compile time|runtime|any time>: <detail>`. Side-effect steps (`no side effects`, `the side
//! effects should be:`) are read and not checked: the engine does not report node, label and
//! property counts.
//!
//! An expected error passes when the engine returns an error of the matching phase: Syntax or
//! Plan kind for compile time, Execution kind for runtime, any of the three for any time. The
//! error's TCK name (`VariableAlreadyBound`, ...) is not compared.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use contextdb_cli::format::{self, Value};
use contextdb_cli::status;
use contextdb_engine::{Database, DbConfig, ErrorKind, StatementResult};

/// A feature file: one TCK area's scenarios.
#[derive(Debug, Clone)]
pub struct Feature {
    /// The path below the features directory, e.g. `clauses/create/Create1.feature`.
    pub path: String,
    /// The directory below the features directory, e.g. `clauses/create`.
    pub area: String,
    pub name: String,
    pub scenarios: Vec<Scenario>,
}

/// One scenario, with Scenario Outline examples already expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// 1-based line of the `Scenario` keyword.
    pub line: usize,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    CompileTime,
    Runtime,
    AnyTime,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `Given an empty graph` or `Given any graph`.
    Graph,
    /// `having executed:` a setup query.
    Setup(String),
    /// `parameters are:` rows of name and value (TCK notation).
    Parameters(Vec<(String, String)>),
    /// `executing query:` or `executing control query:`.
    Query(String),
    /// `the result should be...:` a header row, then rows of cells in TCK notation.
    ExpectRows {
        in_order: bool,
        ignore_list_order: bool,
        table: Vec<Vec<String>>,
    },
    ExpectEmpty,
    ExpectError {
        error: String,
        phase: Phase,
        detail: String,
    },
    /// `no side effects` or `the side effects should be:`; not checked (see the module docs).
    SideEffects,
}

// ---------------------------------------------------------------------------------------
// Gherkin

struct RawScenario {
    name: String,
    line: usize,
    steps: Vec<RawStep>,
    examples: Vec<Vec<Vec<String>>>,
    outline: bool,
}

struct RawStep {
    text: String,
    line: usize,
    doc: Option<String>,
    table: Option<Vec<Vec<String>>>,
}

const STEP_KEYWORDS: [&str; 5] = ["Given ", "When ", "Then ", "And ", "But "];

/// Parses a feature file into its name and scenarios.
pub fn parse_feature(text: &str) -> Result<(String, Vec<Scenario>), String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut feature_name = String::new();
    let mut raw: Vec<RawScenario> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let line_number = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        if let Some(name) = line.strip_prefix("Feature:") {
            feature_name = name.trim().to_owned();
        } else if let Some(name) = strip_any(line, &["Scenario Outline:", "Scenario Template:"]) {
            raw.push(RawScenario::new(name, line_number, true));
        } else if let Some(name) = strip_any(line, &["Scenario:", "Example:"]) {
            raw.push(RawScenario::new(name, line_number, false));
        } else if strip_any(line, &["Examples:", "Scenarios:"]).is_some() {
            let table = read_table(&lines, &mut i);
            let scenario = raw
                .last_mut()
                .ok_or(format!("line {line_number}: Examples outside a scenario"))?;
            scenario.examples.push(table);
        } else if let Some(keyword) = STEP_KEYWORDS.iter().find(|k| line.starts_with(*k)) {
            let scenario = raw
                .last_mut()
                .ok_or(format!("line {line_number}: a step outside a scenario"))?;
            let mut step = RawStep {
                text: line[keyword.len()..].trim().to_owned(),
                line: line_number,
                doc: None,
                table: None,
            };
            let next = next_content_line(&lines, i);
            if let Some(next) = next {
                let trimmed = lines[next].trim_start();
                if trimmed.starts_with("\"\"\"") {
                    i = next;
                    step.doc = Some(read_doc_string(&lines, &mut i)?);
                } else if trimmed.starts_with('|') {
                    i = next;
                    step.table = Some(read_table(&lines, &mut i));
                }
            }
            scenario.steps.push(step);
        } else {
            return Err(format!("line {line_number}: cannot read `{line}`"));
        }
    }
    let mut scenarios = Vec::new();
    for scenario in raw {
        scenarios.extend(scenario.expand()?);
    }
    Ok((feature_name, scenarios))
}

fn strip_any<'a>(line: &'a str, prefixes: &[&str]) -> Option<&'a str> {
    prefixes
        .iter()
        .find_map(|p| line.strip_prefix(p))
        .map(str::trim)
}

/// The next line that is not blank or a comment, from `from` on.
fn next_content_line(lines: &[&str], from: usize) -> Option<usize> {
    (from..lines.len()).find(|&j| {
        let t = lines[j].trim();
        !t.is_empty() && !t.starts_with('#')
    })
}

/// Reads a `"""` doc string starting at line `*i`; leaves `*i` after the closing quotes.
fn read_doc_string(lines: &[&str], i: &mut usize) -> Result<String, String> {
    let opening = lines[*i];
    let indent = opening.len() - opening.trim_start().len();
    let start_line = *i + 1;
    *i += 1;
    let mut content = Vec::new();
    while *i < lines.len() {
        let line = lines[*i];
        *i += 1;
        if line.trim() == "\"\"\"" {
            return Ok(content.join("\n"));
        }
        // Gherkin removes the opening quotes' indentation from every line.
        let strip = line
            .char_indices()
            .take_while(|(at, c)| *at < indent && c.is_whitespace())
            .count();
        content.push(&line[strip..]);
    }
    Err(format!(
        "line {start_line}: doc string without closing quotes"
    ))
}

/// Reads the table rows starting at line `*i`; leaves `*i` after the last row.
fn read_table(lines: &[&str], i: &mut usize) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    while let Some(next) = next_content_line(lines, *i) {
        let line = lines[next].trim();
        if !line.starts_with('|') {
            break;
        }
        rows.push(split_table_row(line));
        *i = next + 1;
    }
    rows
}

/// Splits `| a | b |` into trimmed cells, honouring Gherkin's `\|`, `\\` and `\n` escapes.
pub fn split_table_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('|') => cell.push('|'),
                Some('\\') => cell.push('\\'),
                Some('n') => cell.push('\n'),
                Some(other) => {
                    cell.push('\\');
                    cell.push(other);
                }
                None => cell.push('\\'),
            },
            '|' => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            c => cell.push(c),
        }
    }
    // Text after the last `|` is not a cell.
    cells
}

impl RawScenario {
    fn new(name: &str, line: usize, outline: bool) -> Self {
        RawScenario {
            name: name.to_owned(),
            line,
            steps: Vec::new(),
            examples: Vec::new(),
            outline,
        }
    }

    fn expand(self) -> Result<Vec<Scenario>, String> {
        if !self.outline {
            let steps = self
                .steps
                .iter()
                .map(|s| s.to_step(&[]))
                .collect::<Result<_, _>>()?;
            return Ok(vec![Scenario {
                name: self.name,
                line: self.line,
                steps,
            }]);
        }
        let mut scenarios = Vec::new();
        for table in &self.examples {
            let Some((header, rows)) = table.split_first() else {
                continue;
            };
            for row in rows {
                let bindings: Vec<(String, &str)> = header
                    .iter()
                    .zip(row)
                    .map(|(name, value)| (format!("<{name}>"), value.as_str()))
                    .collect();
                let steps = self
                    .steps
                    .iter()
                    .map(|s| s.to_step(&bindings))
                    .collect::<Result<_, _>>()?;
                let number = scenarios.len() + 1;
                scenarios.push(Scenario {
                    name: format!("{} (example {number})", self.name),
                    line: self.line,
                    steps,
                });
            }
        }
        Ok(scenarios)
    }
}

fn substitute(text: &str, bindings: &[(String, &str)]) -> String {
    let mut out = text.to_owned();
    for (placeholder, value) in bindings {
        out = out.replace(placeholder.as_str(), value);
    }
    out
}

impl RawStep {
    fn to_step(&self, bindings: &[(String, &str)]) -> Result<Step, String> {
        let text = substitute(&self.text, bindings);
        let doc = self.doc.as_deref().map(|d| substitute(d, bindings));
        let table: Option<Vec<Vec<String>>> = self.table.as_ref().map(|t| {
            t.iter()
                .map(|row| row.iter().map(|c| substitute(c, bindings)).collect())
                .collect()
        });
        let fail = |what: &str| format!("line {}: {what} in `{text}`", self.line);
        let step = match text.as_str() {
            "an empty graph" | "any graph" => Step::Graph,
            "having executed:" => Step::Setup(doc.ok_or_else(|| fail("no query"))?),
            "executing query:" | "executing control query:" => {
                Step::Query(doc.ok_or_else(|| fail("no query"))?)
            }
            "parameters are:" => {
                let rows = table.ok_or_else(|| fail("no table"))?;
                let pairs = rows
                    .into_iter()
                    .map(|row| match <[String; 2]>::try_from(row) {
                        Ok([name, value]) => Ok((name, value)),
                        Err(_) => Err(fail("a parameter row needs two cells")),
                    })
                    .collect::<Result<_, _>>()?;
                Step::Parameters(pairs)
            }
            "the result should be empty" => Step::ExpectEmpty,
            "no side effects" | "the side effects should be:" => Step::SideEffects,
            other if other.starts_with("the result should be") => {
                let ignore_list_order = other.contains("(ignoring element order for lists)");
                let in_order = other.contains("in order") && !other.contains("in any order");
                Step::ExpectRows {
                    in_order,
                    ignore_list_order,
                    table: table.ok_or_else(|| fail("no table"))?,
                }
            }
            other if other.contains(" should be raised at ") => {
                parse_error_step(other).ok_or_else(|| fail("cannot read the expected error"))?
            }
            _ => return Err(fail("unknown step")),
        };
        Ok(step)
    }
}

/// Reads `a SyntaxError should be raised at compile time: VariableAlreadyBound`.
fn parse_error_step(text: &str) -> Option<Step> {
    let rest = text
        .strip_prefix("a ")
        .or_else(|| text.strip_prefix("an "))?;
    let (error, rest) = rest.split_once(" should be raised at ")?;
    let (phase, detail) = rest.split_once(':').unwrap_or((rest, ""));
    let phase = match phase.trim() {
        "compile time" => Phase::CompileTime,
        "runtime" => Phase::Runtime,
        "any time" => Phase::AnyTime,
        _ => return None,
    };
    Some(Step::ExpectError {
        error: error.trim().to_owned(),
        phase,
        detail: detail.trim().to_owned(),
    })
}

// ---------------------------------------------------------------------------------------
// Values

/// A value as the TCK compares it. Graph entities keep labels, type and properties; their
/// ids and endpoints are not compared.
#[derive(Debug, Clone)]
pub enum TckValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<TckValue>),
    Map(BTreeMap<String, TckValue>),
    Node {
        labels: BTreeSet<String>,
        properties: BTreeMap<String, TckValue>,
    },
    Relationship {
        rel_type: String,
        properties: BTreeMap<String, TckValue>,
    },
    /// Nodes, and the relationships between them with `true` when one points forward.
    Path {
        nodes: Vec<TckValue>,
        relationships: Vec<(TckValue, bool)>,
    },
}

/// Relative difference under which two floats are taken as equal: results computed in a
/// different order than the reference implementation's may differ in the last bits.
const FLOAT_TOLERANCE_RELATIVE: f64 = 1e-12;

impl TckValue {
    /// Equality as the TCK means it; lists compare as multisets when `ignore_list_order`.
    pub fn matches(&self, other: &TckValue, ignore_list_order: bool) -> bool {
        use TckValue as V;
        let maps_match = |a: &BTreeMap<String, V>, b: &BTreeMap<String, V>| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && va.matches(vb, ignore_list_order))
        };
        match (self, other) {
            (V::Null, V::Null) => true,
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Int(a), V::Int(b)) => a == b,
            (V::Float(a), V::Float(b)) => {
                (a.is_nan() && b.is_nan())
                    || a == b
                    || (a - b).abs() <= FLOAT_TOLERANCE_RELATIVE * a.abs().max(b.abs())
            }
            (V::String(a), V::String(b)) => a == b,
            (V::List(a), V::List(b)) if ignore_list_order => multiset_match(a, b, true),
            (V::List(a), V::List(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.matches(y, false))
            }
            (V::Map(a), V::Map(b)) => maps_match(a, b),
            (
                V::Node {
                    labels: la,
                    properties: pa,
                },
                V::Node {
                    labels: lb,
                    properties: pb,
                },
            ) => la == lb && maps_match(pa, pb),
            (
                V::Relationship {
                    rel_type: ta,
                    properties: pa,
                },
                V::Relationship {
                    rel_type: tb,
                    properties: pb,
                },
            ) => ta == tb && maps_match(pa, pb),
            (
                V::Path {
                    nodes: na,
                    relationships: ra,
                },
                V::Path {
                    nodes: nb,
                    relationships: rb,
                },
            ) => {
                na.len() == nb.len()
                    && ra.len() == rb.len()
                    && na.iter().zip(nb).all(|(x, y)| x.matches(y, false))
                    && ra
                        .iter()
                        .zip(rb)
                        .all(|((x, fx), (y, fy))| fx == fy && x.matches(y, false))
            }
            _ => false,
        }
    }
}

/// Whether `a` and `b` hold the same values, in any order.
fn multiset_match(a: &[TckValue], b: &[TckValue], ignore_list_order: bool) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        let found = (0..b.len()).find(|&j| !used[j] && x.matches(&b[j], ignore_list_order));
        found.map(|j| used[j] = true).is_some()
    })
}

impl std::fmt::Display for TckValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn map(
            f: &mut std::fmt::Formatter<'_>,
            m: &BTreeMap<String, TckValue>,
        ) -> std::fmt::Result {
            write!(f, "{{")?;
            for (i, (k, v)) in m.iter().enumerate() {
                write!(f, "{}{k}: {v}", if i > 0 { ", " } else { "" })?;
            }
            write!(f, "}}")
        }
        match self {
            TckValue::Null => write!(f, "null"),
            TckValue::Bool(b) => write!(f, "{b}"),
            TckValue::Int(i) => write!(f, "{i}"),
            TckValue::Float(x) => write!(f, "{}", format::format_float(*x)),
            TckValue::String(s) => write!(f, "'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            TckValue::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    write!(f, "{}{item}", if i > 0 { ", " } else { "" })?;
                }
                write!(f, "]")
            }
            TckValue::Map(m) => map(f, m),
            TckValue::Node { labels, properties } => {
                write!(f, "(")?;
                for label in labels {
                    write!(f, ":{label}")?;
                }
                if !properties.is_empty() {
                    write!(f, "{}", if labels.is_empty() { "" } else { " " })?;
                    map(f, properties)?;
                }
                write!(f, ")")
            }
            TckValue::Relationship {
                rel_type,
                properties,
            } => {
                write!(f, "[:{rel_type}")?;
                if !properties.is_empty() {
                    write!(f, " ")?;
                    map(f, properties)?;
                }
                write!(f, "]")
            }
            TckValue::Path {
                nodes,
                relationships,
            } => {
                write!(f, "<")?;
                for (i, node) in nodes.iter().enumerate() {
                    if i > 0 {
                        let (rel, forward) = &relationships[i - 1];
                        if *forward {
                            write!(f, "-{rel}->")?;
                        } else {
                            write!(f, "<-{rel}-")?;
                        }
                    }
                    write!(f, "{node}")?;
                }
                write!(f, ">")
            }
        }
    }
}

/// Deepest nesting the TCK value parser accepts; the TCK's values nest a few levels at most.
const NESTING_DEPTH_MAX: usize = 64;

/// Parses one cell in TCK notation.
pub fn parse_value(text: &str) -> Result<TckValue, String> {
    let mut parser = ValueParser {
        chars: text.chars().collect(),
        at: 0,
        depth: 0,
    };
    let value = parser.value()?;
    parser.skip_whitespace();
    if parser.at != parser.chars.len() {
        return Err(parser.error("unexpected text after the value"));
    }
    Ok(value)
}

struct ValueParser {
    chars: Vec<char>,
    at: usize,
    depth: usize,
}

impl ValueParser {
    fn error(&self, what: &str) -> String {
        let text: String = self.chars.iter().collect();
        format!("{what} at character {} of `{text}`", self.at + 1)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_whitespace();
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{c}`")))
        }
    }

    fn rest_starts_with(&self, word: &str) -> bool {
        let rest = self.chars.get(self.at..).unwrap_or_default();
        word.chars().count() <= rest.len() && word.chars().zip(rest).all(|(w, r)| w == *r)
    }

    fn value(&mut self) -> Result<TckValue, String> {
        self.depth += 1;
        if self.depth > NESTING_DEPTH_MAX {
            return Err(self.error("values nest too deeply"));
        }
        self.skip_whitespace();
        let value = match self.peek() {
            None => Err(self.error("expected a value")),
            Some('\'') => self.string().map(TckValue::String),
            Some('[') => self.list_or_relationship(),
            Some('{') => self.map().map(TckValue::Map),
            Some('(') => self.node(),
            Some('<') => self.path(),
            Some(c) if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number(),
            Some(_) => self.word(),
        };
        self.depth -= 1;
        value
    }

    fn word(&mut self) -> Result<TckValue, String> {
        let word = self.identifier()?;
        match word.to_ascii_lowercase().as_str() {
            "null" => Ok(TckValue::Null),
            "true" => Ok(TckValue::Bool(true)),
            "false" => Ok(TckValue::Bool(false)),
            "nan" => Ok(TckValue::Float(f64::NAN)),
            "inf" | "infinity" => Ok(TckValue::Float(f64::INFINITY)),
            _ => Err(self.error(&format!("unknown word `{word}`"))),
        }
    }

    fn identifier(&mut self) -> Result<String, String> {
        self.skip_whitespace();
        if self.peek() == Some('`') {
            self.at += 1;
            let start = self.at;
            while self.peek().is_some_and(|c| c != '`') {
                self.at += 1;
            }
            let name: String = self.chars[start..self.at].iter().collect();
            self.expect('`')?;
            return Ok(name);
        }
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.error("expected a name"));
        }
        Ok(self.chars[start..self.at].iter().collect())
    }

    fn number(&mut self) -> Result<TckValue, String> {
        let start = self.at;
        if matches!(self.peek(), Some('-' | '+')) {
            self.at += 1;
        }
        if self.rest_starts_with("Inf") {
            let negative = self.chars[start] == '-';
            self.identifier()?;
            return Ok(TckValue::Float(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }));
        }
        let mut is_float = false;
        while let Some(c) = self.peek() {
            let exponent_sign =
                matches!(c, '-' | '+') && matches!(self.chars.get(self.at - 1), Some('e' | 'E'));
            if c.is_ascii_digit() || exponent_sign {
                self.at += 1;
            } else if matches!(c, '.' | 'e' | 'E') {
                is_float = true;
                self.at += 1;
            } else {
                break;
            }
        }
        let text: String = self.chars[start..self.at].iter().collect();
        if is_float {
            text.parse()
                .map(TckValue::Float)
                .map_err(|_| self.error(&format!("bad float `{text}`")))
        } else {
            text.parse()
                .map(TckValue::Int)
                .map_err(|_| self.error(&format!("bad integer `{text}`")))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('\'')?;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some('\'') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.at += 1;
                    let escaped = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.at += 1;
                    out.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                }
                Some(c) => {
                    self.at += 1;
                    out.push(c);
                }
            }
        }
    }

    /// `[` starts a relationship when a `:` follows it, else a list.
    fn list_or_relationship(&mut self) -> Result<TckValue, String> {
        let after_bracket = self.chars[self.at + 1..]
            .iter()
            .find(|c| !c.is_whitespace());
        if after_bracket == Some(&':') {
            return self.relationship();
        }
        self.expect('[')?;
        let mut items = Vec::new();
        if self.eat(']') {
            return Ok(TckValue::List(items));
        }
        loop {
            items.push(self.value()?);
            if self.eat(']') {
                return Ok(TckValue::List(items));
            }
            self.expect(',')?;
        }
    }

    fn map(&mut self) -> Result<BTreeMap<String, TckValue>, String> {
        self.expect('{')?;
        let mut map = BTreeMap::new();
        if self.eat('}') {
            return Ok(map);
        }
        loop {
            let key = self.identifier()?;
            self.expect(':')?;
            let value = self.value()?;
            map.insert(key, value);
            if self.eat('}') {
                return Ok(map);
            }
            self.expect(',')?;
        }
    }

    /// `(` [variable] {`:Label`} [properties] `)`
    fn node(&mut self) -> Result<TckValue, String> {
        self.expect('(')?;
        self.skip_whitespace();
        if self
            .peek()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '`')
        {
            self.identifier()?;
        }
        let mut labels = BTreeSet::new();
        while self.eat(':') {
            labels.insert(self.identifier()?);
        }
        self.skip_whitespace();
        let properties = if self.peek() == Some('{') {
            self.map()?
        } else {
            BTreeMap::new()
        };
        self.expect(')')?;
        Ok(TckValue::Node { labels, properties })
    }

    /// `[` [variable] `:TYPE` [properties] `]`
    fn relationship(&mut self) -> Result<TckValue, String> {
        self.expect('[')?;
        self.skip_whitespace();
        if self
            .peek()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '`')
        {
            self.identifier()?;
        }
        self.expect(':')?;
        let rel_type = self.identifier()?;
        self.skip_whitespace();
        let properties = if self.peek() == Some('{') {
            self.map()?
        } else {
            BTreeMap::new()
        };
        self.expect(']')?;
        Ok(TckValue::Relationship {
            rel_type,
            properties,
        })
    }

    /// `<` node {(`-` rel `->` | `<-` rel `-`) node} `>`
    fn path(&mut self) -> Result<TckValue, String> {
        self.expect('<')?;
        let mut nodes = vec![self.node()?];
        let mut relationships = Vec::new();
        loop {
            if self.eat('>') {
                return Ok(TckValue::Path {
                    nodes,
                    relationships,
                });
            }
            let backward = self.eat('<');
            self.expect('-')?;
            let relationship = self.relationship()?;
            self.expect('-')?;
            let forward = !backward && self.eat('>');
            if !forward && !backward {
                return Err(self.error("a path relationship needs a direction"));
            }
            relationships.push((relationship, forward));
            nodes.push(self.node()?);
        }
    }
}

/// A TCK parameter value as the JSON the engine binds.
pub fn parameter_json(value: &TckValue) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        TckValue::Null => J::Null,
        TckValue::Bool(b) => J::Bool(*b),
        TckValue::Int(i) => J::from(*i),
        TckValue::Float(x) => serde_json::Number::from_f64(*x)
            .map(J::Number)
            .ok_or("a parameter cannot be NaN or infinite in JSON")?,
        TckValue::String(s) => J::String(s.clone()),
        TckValue::List(items) => {
            J::Array(items.iter().map(parameter_json).collect::<Result<_, _>>()?)
        }
        TckValue::Map(map) => J::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), parameter_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => return Err(format!("cannot pass {other} as a parameter")),
    })
}

/// Reads a result value as the TCK sees it: a struct with `_label` is a node, one with
/// `_type` a relationship, one of `nodes` and `relationships` a path.
pub fn tck_value(value: &Value) -> TckValue {
    match value {
        Value::Null => TckValue::Null,
        Value::Bool(b) => TckValue::Bool(*b),
        Value::Int(i) => TckValue::Int(*i),
        Value::UInt(u) => i64::try_from(*u).map_or(TckValue::Float(*u as f64), TckValue::Int),
        Value::Float(x) => TckValue::Float(*x),
        Value::Decimal(text) => TckValue::Float(text.parse().unwrap_or(f64::NAN)),
        Value::Text(s) | Value::Other(s) => TckValue::String(s.clone()),
        Value::List(items) => TckValue::List(items.iter().map(tck_value).collect()),
        Value::Struct(fields) => struct_value(fields),
    }
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// Properties of a graph entity: its columns less the `_` bookkeeping fields and nulls,
/// since a property set to null does not exist in openCypher.
fn properties(fields: &[(String, Value)]) -> BTreeMap<String, TckValue> {
    fields
        .iter()
        .filter(|(name, value)| !name.starts_with('_') && *value != Value::Null)
        .map(|(name, value)| (name.clone(), tck_value(value)))
        .collect()
}

fn struct_value(fields: &[(String, Value)]) -> TckValue {
    if let Some(label) = field(fields, "_label") {
        let labels = match label {
            Value::Text(l) if !l.is_empty() => BTreeSet::from([l.clone()]),
            Value::List(ls) => ls
                .iter()
                .filter_map(|l| match l {
                    Value::Text(l) => Some(l.clone()),
                    _ => None,
                })
                .collect(),
            _ => BTreeSet::new(),
        };
        return TckValue::Node {
            labels,
            properties: properties(fields),
        };
    }
    if let Some(rel_type) = field(fields, "_type") {
        return TckValue::Relationship {
            rel_type: match rel_type {
                Value::Text(t) => t.clone(),
                other => other.to_cell_text(),
            },
            properties: properties(fields),
        };
    }
    if let (2, Some(Value::List(nodes)), Some(Value::List(relationships))) = (
        fields.len(),
        field(fields, "nodes"),
        field(fields, "relationships"),
    ) {
        return path_value(nodes, relationships);
    }
    TckValue::Map(
        fields
            .iter()
            .map(|(name, value)| (name.clone(), tck_value(value)))
            .collect(),
    )
}

fn path_value(nodes: &[Value], relationships: &[Value]) -> TckValue {
    let id = |value: &Value, name: &str| match value {
        Value::Struct(fields) => field(fields, name).cloned(),
        _ => None,
    };
    let directed = relationships
        .iter()
        .enumerate()
        .map(|(i, relationship)| {
            let (before, after) = (nodes.get(i), nodes.get(i + 1));
            let before_id = before.and_then(|n| id(n, "_id"));
            let after_id = after.and_then(|n| id(n, "_id"));
            // Backward only when the ids say so; a path whose ids cannot be matched up is
            // read as pointing forward.
            let backward = before_id != after_id
                && id(relationship, "_src") == after_id
                && id(relationship, "_dst") == before_id
                && after_id.is_some();
            (tck_value(relationship), !backward)
        })
        .collect();
    TckValue::Path {
        nodes: nodes.iter().map(tck_value).collect(),
        relationships: directed,
    }
}

// ---------------------------------------------------------------------------------------
// Running

/// Loads every `.feature` file under `features_dir`, sorted by path.
pub fn load_features(features_dir: &Path) -> Result<Vec<Feature>, String> {
    let mut paths = Vec::new();
    crate::collect_files(features_dir, "feature", &mut paths)
        .map_err(|e| format!("cannot list {}: {e}", features_dir.display()))?;
    paths.sort();
    let mut features = Vec::new();
    for path in paths {
        let relative = path.strip_prefix(features_dir).unwrap_or(&path);
        let area = relative
            .parent()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (name, scenarios) =
            parse_feature(&text).map_err(|e| format!("{}: {e}", relative.display()))?;
        features.push(Feature {
            path: relative.to_string_lossy().replace('\\', "/"),
            area,
            name,
            scenarios,
        });
    }
    Ok(features)
}

/// Plays one scenario on a fresh in-memory database; `Err` says why it failed.
pub async fn run_scenario(scenario: Scenario) -> Result<(), String> {
    let db = Database::open(DbConfig::memory())
        .await
        .map_err(|e| format!("cannot open a database: {e}"))?;
    let outcome = play(&db, &scenario.steps).await;
    db.shutdown().await;
    outcome
}

type QueryOutcome = Result<Option<StatementResult>, contextdb_engine::Error>;

async fn play(db: &Database, steps: &[Step]) -> Result<(), String> {
    let mut params: HashMap<String, serde_json::Value> = HashMap::new();
    let mut last: Option<QueryOutcome> = None;
    for step in steps {
        match step {
            Step::Graph | Step::SideEffects => {}
            Step::Setup(query) => {
                execute(db, query, &HashMap::new())
                    .await
                    .map_err(|e| format!("setup query failed: {e}\n{query}"))?;
            }
            Step::Parameters(pairs) => {
                for (name, text) in pairs {
                    let value = parse_value(text)
                        .and_then(|v| parameter_json(&v))
                        .map_err(|e| format!("parameter {name}: {e}"))?;
                    params.insert(name.clone(), value);
                }
            }
            Step::Query(query) => last = Some(execute(db, query, &params).await),
            Step::ExpectRows {
                in_order,
                ignore_list_order,
                table,
            } => {
                let result = query_result(&last)?;
                check_rows(result, table, *in_order, *ignore_list_order)?;
            }
            Step::ExpectEmpty => {
                let result = query_result(&last)?;
                let rows = result_rows(result)?;
                if !rows.is_empty() {
                    return Err(format!("expected no rows, got {}", rows.len()));
                }
            }
            Step::ExpectError {
                error,
                phase,
                detail,
            } => check_error(&last, error, *phase, detail)?,
        }
    }
    Ok(())
}

async fn execute(
    db: &Database,
    query: &str,
    params: &HashMap<String, serde_json::Value>,
) -> QueryOutcome {
    let results = if params.is_empty() {
        db.execute(query).await?
    } else {
        db.execute_with_params(query, params).await?
    };
    Ok(results.into_iter().last())
}

fn query_result(last: &Option<QueryOutcome>) -> Result<Option<&StatementResult>, String> {
    match last {
        None => Err("a result was expected before any query ran".to_owned()),
        Some(Err(e)) => Err(format!("query failed: {e}")),
        Some(Ok(result)) => Ok(result.as_ref()),
    }
}

/// The rows of a result; the engine's report of a write (no RETURN) has none.
fn result_rows(result: Option<&StatementResult>) -> Result<Vec<Vec<TckValue>>, String> {
    let Some(result) = result.filter(|r| !status::is_report_only(r)) else {
        return Ok(Vec::new());
    };
    let rows =
        format::batch_rows(&result.batches).map_err(|e| format!("cannot read the result: {e}"))?;
    Ok(rows
        .iter()
        .map(|row| row.iter().map(tck_value).collect())
        .collect())
}

fn check_rows(
    result: Option<&StatementResult>,
    table: &[Vec<String>],
    in_order: bool,
    ignore_list_order: bool,
) -> Result<(), String> {
    let (header, expected_cells) = table
        .split_first()
        .ok_or("the expected table has no header")?;
    let columns: Vec<String> = result
        .filter(|r| !status::is_report_only(r))
        .map(|r| r.schema.fields().iter().map(|f| f.name().clone()).collect())
        .unwrap_or_default();
    if &columns != header {
        return Err(format!("expected columns {header:?}, got {columns:?}"));
    }
    let expected: Vec<Vec<TckValue>> = expected_cells
        .iter()
        .map(|row| row.iter().map(|cell| parse_value(cell)).collect())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read the expected table: {e}"))?;
    let actual = result_rows(result)?;
    let row_matches = |a: &Vec<TckValue>, b: &Vec<TckValue>| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.matches(y, ignore_list_order))
    };
    let same = if in_order {
        expected.len() == actual.len()
            && expected.iter().zip(&actual).all(|(e, a)| row_matches(e, a))
    } else {
        rows_match_in_any_order(&expected, &actual, row_matches)
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "rows differ{}\nexpected:\n{}\nactual:\n{}",
            if in_order { " (in order)" } else { "" },
            show_rows(&expected),
            show_rows(&actual)
        ))
    }
}

fn rows_match_in_any_order(
    expected: &[Vec<TckValue>],
    actual: &[Vec<TckValue>],
    row_matches: impl Fn(&Vec<TckValue>, &Vec<TckValue>) -> bool,
) -> bool {
    if expected.len() != actual.len() {
        return false;
    }
    let mut used = vec![false; actual.len()];
    expected.iter().all(|e| {
        let found = (0..actual.len()).find(|&j| !used[j] && row_matches(e, &actual[j]));
        found.map(|j| used[j] = true).is_some()
    })
}

/// Rows shown in a failure report: enough to see the difference, not a whole graph.
const REPORT_ROWS_MAX: usize = 20;

fn show_rows(rows: &[Vec<TckValue>]) -> String {
    let mut out: Vec<String> = rows
        .iter()
        .take(REPORT_ROWS_MAX)
        .map(|row| {
            let cells: Vec<String> = row.iter().map(ToString::to_string).collect();
            format!("  | {} |", cells.join(" | "))
        })
        .collect();
    if rows.len() > REPORT_ROWS_MAX {
        out.push(format!("  ... {} rows in all", rows.len()));
    }
    if out.is_empty() {
        out.push("  (no rows)".to_owned());
    }
    out.join("\n")
}

fn check_error(
    last: &Option<QueryOutcome>,
    error: &str,
    phase: Phase,
    detail: &str,
) -> Result<(), String> {
    let expected = format!("{error} at {phase:?}: {detail}");
    let actual = match last {
        None => return Err("an error was expected before any query ran".to_owned()),
        Some(Ok(_)) => return Err(format!("expected {expected}, but the query succeeded")),
        Some(Err(actual)) => actual,
    };
    let accepted = match phase {
        Phase::CompileTime => matches!(actual.kind, ErrorKind::Syntax | ErrorKind::Plan),
        Phase::Runtime => actual.kind == ErrorKind::Execution,
        Phase::AnyTime => matches!(
            actual.kind,
            ErrorKind::Syntax | ErrorKind::Plan | ErrorKind::Execution
        ),
    };
    if accepted {
        Ok(())
    } else {
        Err(format!("expected {expected}, got {actual}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURE: &str = r#"
# comment
Feature: Sample - things

  Scenario: [1] Return a node
    Given an empty graph
    And having executed:
      """
      CREATE (:A {name: 'it\'s'})
      """
    When executing query:
      """
      MATCH (a)
        RETURN a
      """
    Then the result should be, in any order:
      | a                        |
      | (:A {name: 'it\'s'})     |
    And no side effects

  @tag
  Scenario Outline: [2] Nulls
    Given any graph
    And parameters are:
      | elt | <elt> |
    When executing query:
      """
      RETURN $elt IN <coll> AS result
      """
    Then the result should be, in order (ignoring element order for lists):
      | result   |
      | <result> |

    Examples:
      | elt  | coll      | result |
      | null | [1]       | null   |
      | 1    | [1, 2]    | true   |

  Scenario: [3] Fails
    Given any graph
    When executing query:
      """
      RETURN x
      """
    Then a SyntaxError should be raised at compile time: UndefinedVariable
"#;

    #[test]
    fn parses_scenarios_outlines_and_steps() {
        let (name, scenarios) = parse_feature(FEATURE).unwrap();
        assert_eq!(name, "Sample - things");
        let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "[1] Return a node",
                "[2] Nulls (example 1)",
                "[2] Nulls (example 2)",
                "[3] Fails"
            ]
        );
        assert_eq!(scenarios[0].line, 5);
        assert_eq!(
            scenarios[0].steps[1],
            Step::Setup("CREATE (:A {name: 'it\\'s'})".to_owned())
        );
        assert_eq!(
            scenarios[0].steps[2],
            Step::Query("MATCH (a)\n  RETURN a".to_owned())
        );
        assert_eq!(scenarios[0].steps[4], Step::SideEffects);
        let second = &scenarios[2].steps;
        assert_eq!(
            second[1],
            Step::Parameters(vec![("elt".into(), "1".into())])
        );
        assert_eq!(
            second[2],
            Step::Query("RETURN $elt IN [1, 2] AS result".into())
        );
        assert_eq!(
            second[3],
            Step::ExpectRows {
                in_order: true,
                ignore_list_order: true,
                table: vec![vec!["result".into()], vec!["true".into()]],
            }
        );
        assert_eq!(
            scenarios[3].steps[2],
            Step::ExpectError {
                error: "SyntaxError".into(),
                phase: Phase::CompileTime,
                detail: "UndefinedVariable".into(),
            }
        );
    }

    #[test]
    fn unknown_steps_are_errors() {
        let text = "Feature: F\n  Scenario: S\n    Given a graph with a twist\n";
        assert!(parse_feature(text).unwrap_err().contains("unknown step"));
    }

    #[test]
    fn table_rows_honour_escapes() {
        assert_eq!(split_table_row(r"| 'a\|b' | x\\y |"), vec!["'a|b'", r"x\y"]);
    }

    fn parsed(text: &str) -> TckValue {
        parse_value(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_scalars() {
        assert!(parsed("null").matches(&TckValue::Null, false));
        assert!(parsed("-12").matches(&TckValue::Int(-12), false));
        assert!(parsed("1.0").matches(&TckValue::Float(1.0), false));
        assert!(!parsed("1.0").matches(&TckValue::Int(1), false));
        assert!(parsed("1e3").matches(&TckValue::Float(1000.0), false));
        assert!(parsed("-1.5e-2").matches(&TckValue::Float(-0.015), false));
        assert!(parsed("NaN").matches(&TckValue::Float(f64::NAN), false));
        assert!(parsed("-Inf").matches(&TckValue::Float(f64::NEG_INFINITY), false));
        assert!(parsed("'it\\'s'").matches(&TckValue::String("it's".into()), false));
        assert!(parsed("true").matches(&TckValue::Bool(true), false));
        assert!(parse_value("1 2").is_err());
        assert!(parse_value("'open").is_err());
    }

    #[test]
    fn parses_graph_values() {
        assert_eq!(
            parsed("(:A:B {p: 1, q: 'x'})").to_string(),
            "(:A:B {p: 1, q: 'x'})"
        );
        assert_eq!(parsed("({name: 'A'})").to_string(), "({name: 'A'})");
        assert_eq!(parsed("()").to_string(), "()");
        assert_eq!(parsed("[:T {p: 1.5}]").to_string(), "[:T {p: 1.5}]");
        assert_eq!(
            parsed("<(:Start)-[:T]->()<-[:U]-(:End)>").to_string(),
            "<(:Start)-[:T]->()<-[:U]-(:End)>"
        );
        assert_eq!(
            parsed("[[(:A), [:T], (:B)], {k: [1, null]}]").to_string(),
            "[[(:A), [:T], (:B)], {k: [1, null]}]"
        );
        assert!(parse_value("<(:A)-[:T]-(:B)>").is_err());
    }

    #[test]
    fn list_order_is_ignored_only_when_asked() {
        let a = parsed("[1, [2, 3]]");
        let b = parsed("[[3, 2], 1]");
        assert!(!a.matches(&b, false));
        assert!(a.matches(&b, true));
        assert!(!parsed("[1, 1]").matches(&parsed("[1, 2]"), true));
    }

    fn node(label: Option<&str>, properties: Vec<(&str, Value)>) -> Value {
        let mut fields = vec![
            ("_id".to_owned(), Value::Int(7)),
            (
                "_label".to_owned(),
                label.map_or(Value::Null, |l| Value::Text(l.to_owned())),
            ),
        ];
        fields.extend(properties.into_iter().map(|(k, v)| (k.to_owned(), v)));
        Value::Struct(fields)
    }

    #[test]
    fn result_structs_become_graph_values() {
        let with_nulls = node(
            Some("A"),
            vec![("name", Value::Text("x".into())), ("age", Value::Null)],
        );
        assert!(tck_value(&with_nulls).matches(&parsed("(:A {name: 'x'})"), false));
        assert!(!tck_value(&with_nulls).matches(&parsed("(:B {name: 'x'})"), false));
        assert!(tck_value(&node(None, vec![])).matches(&parsed("()"), false));
        let relationship = Value::Struct(vec![
            ("_id".into(), Value::Int(1)),
            ("_type".into(), Value::Text("T".into())),
            ("_src".into(), Value::Int(1)),
            ("_dst".into(), Value::Int(2)),
            ("w".into(), Value::Float(0.5)),
        ]);
        assert!(tck_value(&relationship).matches(&parsed("[:T {w: 0.5}]"), false));
        let map = Value::Struct(vec![("k".into(), Value::List(vec![Value::Int(1)]))]);
        assert!(tck_value(&map).matches(&parsed("{k: [1]}"), false));
    }

    #[test]
    fn paths_read_their_direction_from_ids() {
        let endpoint = |id: i64, label: &str| {
            Value::Struct(vec![
                ("_id".into(), Value::Int(id)),
                ("_label".into(), Value::Text(label.into())),
            ])
        };
        let relationship = Value::Struct(vec![
            ("_id".into(), Value::Int(10)),
            ("_type".into(), Value::Text("T".into())),
            ("_src".into(), Value::Int(2)),
            ("_dst".into(), Value::Int(1)),
        ]);
        let path = Value::Struct(vec![
            (
                "nodes".into(),
                Value::List(vec![endpoint(1, "A"), endpoint(2, "B")]),
            ),
            ("relationships".into(), Value::List(vec![relationship])),
        ]);
        assert!(tck_value(&path).matches(&parsed("<(:A)<-[:T]-(:B)>"), false));
        assert!(!tck_value(&path).matches(&parsed("<(:A)-[:T]->(:B)>"), false));
    }

    #[test]
    fn rows_match_as_multisets_or_sequences() {
        let rows = |cells: &[&str]| -> Vec<Vec<TckValue>> {
            cells.iter().map(|c| vec![parsed(c)]).collect()
        };
        let same = |a: &Vec<TckValue>, b: &Vec<TckValue>| a[0].matches(&b[0], false);
        assert!(rows_match_in_any_order(
            &rows(&["1", "2", "2"]),
            &rows(&["2", "1", "2"]),
            same
        ));
        assert!(!rows_match_in_any_order(
            &rows(&["1", "1", "2"]),
            &rows(&["1", "2", "2"]),
            same
        ));
    }

    #[test]
    fn parameters_become_json() {
        let value = parsed("{a: [1, 2.5, 'x', null], b: true}");
        assert_eq!(
            parameter_json(&value).unwrap(),
            serde_json::json!({"a": [1, 2.5, "x", null], "b": true})
        );
        assert!(parameter_json(&parsed("(:A)")).is_err());
    }

    #[test]
    fn every_vendored_expectation_parses() {
        let features = load_features(&crate::workspace_dir().join("tests/tck/features")).unwrap();
        let scenarios: Vec<&Scenario> = features.iter().flat_map(|f| &f.scenarios).collect();
        assert!(scenarios.len() > 200, "only {} scenarios", scenarios.len());
        for scenario in scenarios {
            for step in &scenario.steps {
                let cells: Vec<&String> = match step {
                    Step::ExpectRows { table, .. } => table.iter().skip(1).flatten().collect(),
                    Step::Parameters(pairs) => pairs.iter().map(|(_, value)| value).collect(),
                    _ => continue,
                };
                for cell in cells {
                    if let Err(e) = parse_value(cell) {
                        panic!("{}: {e}", scenario.name);
                    }
                }
            }
        }
    }
}
