//! DDL, COPY and their option literals.

use super::{Builder, int_value, unquote_name};
use crate::ast::*;
use crate::parser::{P, Result, Rule};

impl Builder<'_> {
    pub(super) fn signed_i64(&self, p: &P) -> Result<i64> {
        let s = p.as_str();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let v = int_value(digits).and_then(|v| i128::try_from(v).ok());
        let v = v.map(|v| if neg { -v } else { v });
        v.and_then(|v| i64::try_from(v).ok()).ok_or_else(|| {
            self.err(
                p.as_span().start(),
                format!("integer literal {s} is out of range (64-bit signed)"),
            )
        })
    }

    /// An option value (`WITH (...)` of CREATE VECTOR INDEX, COPY options).
    fn option_literal(&self, p: P) -> Result<Literal> {
        let inner = self.need(p.clone().into_inner().next(), &p, "literal")?;
        Ok(match inner.as_rule() {
            Rule::string_lit => Literal::String(self.string(&inner)?),
            Rule::kw_true => Literal::Bool(true),
            Rule::kw_false => Literal::Bool(false),
            Rule::kw_null => Literal::Null,
            _ => {
                let s = inner.as_str();
                let unsigned = s.trim_start_matches(['-', '+']);
                let is_int = unsigned.starts_with("0x")
                    || unsigned.starts_with("0X")
                    || unsigned.starts_with("0o")
                    || unsigned.starts_with("0O")
                    || unsigned.bytes().all(|b| b.is_ascii_digit());
                if is_int {
                    Literal::Integer(self.signed_i64(&inner).or_else(|e| {
                        // `+5`: signed_i64 only knows a leading minus.
                        match s.strip_prefix('+').and_then(int_value) {
                            Some(v) if v <= i64::MAX as u128 => Ok(v as i64),
                            _ => Err(e),
                        }
                    })?)
                } else {
                    Literal::Float(self.float(&inner)?)
                }
            }
        })
    }

    fn options(&self, p: P) -> Result<Vec<(String, Literal)>> {
        let mut out = Vec::new();
        for o in p.into_inner() {
            if o.as_rule() == Rule::option {
                let k = self.need(self.first_inner(&o, Rule::option_key), &o, "key")?;
                let v = self.need(self.first_inner(&o, Rule::option_value), &o, "value")?;
                out.push((unquote_name(k.as_str()), self.option_literal(v)?));
            }
        }
        Ok(out)
    }

    // --- DDL and COPY -------------------------------------------------------------------------

    pub(super) fn create_node_table(&self, p: P) -> Result<CreateNodeTable> {
        let mut name = None;
        let mut columns: Vec<ColumnDef> = Vec::new();
        let mut primary_key: Option<Ident> = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::schema_name => name = Some(self.ident(&c)),
                Rule::column_def => {
                    let col = self.column_def(c)?;
                    if col.primary_key {
                        self.set_primary_key(&mut primary_key, col.name.clone())?;
                    }
                    self.push_column(&mut columns, col)?;
                }
                Rule::primary_key_constraint => {
                    let k = self.need(self.first_inner(&c, Rule::schema_name), &c, "column")?;
                    self.set_primary_key(&mut primary_key, self.ident(&k))?;
                }
                _ => {}
            }
        }
        if let Some(pk) = &primary_key {
            match columns.iter_mut().find(|c| c.name.name == pk.name) {
                Some(col) => col.primary_key = true,
                None => {
                    return Err(self.err(
                        pk.span.start,
                        format!("PRIMARY KEY column `{}` is not defined", pk.name),
                    ));
                }
            }
        }
        Ok(CreateNodeTable {
            name: self.need(name, &p, "table name")?,
            if_not_exists: self.has_inner(&p, Rule::if_not_exists),
            columns,
            primary_key,
        })
    }

    fn set_primary_key(&self, slot: &mut Option<Ident>, key: Ident) -> Result<()> {
        if slot.is_some() {
            return Err(self.err(key.span.start, "a table can have only one PRIMARY KEY"));
        }
        *slot = Some(key);
        Ok(())
    }

    fn push_column(&self, columns: &mut Vec<ColumnDef>, col: ColumnDef) -> Result<()> {
        if columns.iter().any(|c| c.name.name == col.name.name) {
            return Err(self.err(
                col.name.span.start,
                format!("column `{}` is defined twice", col.name.name),
            ));
        }
        columns.push(col);
        Ok(())
    }

    fn column_def(&self, p: P) -> Result<ColumnDef> {
        let name = self.need(self.first_inner(&p, Rule::schema_name), &p, "column")?;
        let ty = self.need(self.first_inner(&p, Rule::data_type), &p, "type")?;
        let default = match self.first_inner(&p, Rule::column_default) {
            Some(d) => {
                let value = self.need(self.first_inner(&d, Rule::option_value), &d, "value")?;
                Some(self.option_literal(value)?)
            }
            None => None,
        };
        Ok(ColumnDef {
            name: self.ident(&name),
            data_type: self.data_type(ty)?,
            primary_key: self.has_inner(&p, Rule::column_primary_key),
            default,
        })
    }

    fn data_type(&self, p: P) -> Result<DataType> {
        let mut ty = None;
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::vector_type | Rule::float_array_type => {
                    let d = self.need(self.first_inner(&c, Rule::dimension), &c, "dimension")?;
                    let dim = d.as_str().parse::<u32>().ok().filter(|&d| d > 0);
                    let dim = dim.ok_or_else(|| {
                        self.err(
                            d.as_span().start(),
                            format!(
                                "vector dimension must be between 1 and {}, got {}",
                                u32::MAX,
                                d.as_str()
                            ),
                        )
                    })?;
                    ty = Some(DataType::Vector(dim));
                }
                Rule::simple_type => {
                    ty = Some(match c.as_str().to_ascii_uppercase().as_str() {
                        "BOOLEAN" | "BOOL" => DataType::Boolean,
                        "BIGINT" | "INT64" => DataType::Int64,
                        "FLOAT" | "REAL" | "FLOAT32" => DataType::Float32,
                        "DOUBLE" | "FLOAT64" => DataType::Float64,
                        "STRING" | "VARCHAR" | "TEXT" => DataType::String,
                        "DATE" => DataType::Date,
                        "TIMESTAMP" => DataType::Timestamp,
                        "TIMESTAMPTZ" => DataType::TimestampTz,
                        "TIME" => DataType::Time,
                        "BINARY" | "BLOB" | "BYTEA" => DataType::Binary,
                        _ => DataType::Int32,
                    })
                }
                Rule::list_suffix => {
                    let inner = self.need(ty.take(), &c, "element type")?;
                    ty = Some(DataType::List(Box::new(inner)));
                }
                _ => {}
            }
        }
        self.need(ty, &p, "type")
    }

    pub(super) fn create_edge_table(&self, p: P) -> Result<CreateEdgeTable> {
        let mut name = None;
        let mut endpoints = Vec::new();
        let mut columns = Vec::new();
        for c in p.clone().into_inner() {
            match c.as_rule() {
                Rule::schema_name => name = Some(self.ident(&c)),
                Rule::edge_endpoints => {
                    let mut names = c
                        .clone()
                        .into_inner()
                        .filter(|n| n.as_rule() == Rule::schema_name)
                        .map(|n| self.ident(&n));
                    let (from, to) = (names.next(), names.next());
                    endpoints.push((self.need(from, &c, "FROM")?, self.need(to, &c, "TO")?));
                }
                Rule::column_def => {
                    let col = self.column_def(c)?;
                    if col.primary_key {
                        return Err(self.err(
                            col.name.span.start,
                            "edge tables have no PRIMARY KEY (edges are identified by the system)",
                        ));
                    }
                    self.push_column(&mut columns, col)?;
                }
                _ => {}
            }
        }
        Ok(CreateEdgeTable {
            name: self.need(name, &p, "table name")?,
            if_not_exists: self.has_inner(&p, Rule::if_not_exists),
            endpoints,
            columns,
        })
    }

    pub(super) fn create_vector_index(&self, p: P) -> Result<CreateVectorIndex> {
        let mut names = p
            .clone()
            .into_inner()
            .filter(|n| n.as_rule() == Rule::schema_name)
            .map(|n| self.ident(&n));
        let (name, label, property) = (names.next(), names.next(), names.next());
        let options = match self.first_inner(&p, Rule::options) {
            Some(o) => self.options(o)?,
            None => Vec::new(),
        };
        Ok(CreateVectorIndex {
            name: self.need(name, &p, "index name")?,
            label: self.need(label, &p, "label")?,
            property: self.need(property, &p, "property")?,
            options,
        })
    }

    pub(super) fn drop_object(&self, p: P) -> Result<DropObject> {
        let kind_pair = self.need(self.first_inner(&p, Rule::drop_kind), &p, "kind")?;
        let kind = if self.has_inner(&kind_pair, Rule::kw_node) {
            ObjectKind::NodeTable
        } else if self.has_inner(&kind_pair, Rule::kw_edge) {
            ObjectKind::EdgeTable
        } else {
            ObjectKind::VectorIndex
        };
        let name = self.need(self.first_inner(&p, Rule::schema_name), &p, "name")?;
        Ok(DropObject {
            kind,
            name: self.ident(&name),
            if_exists: self.has_inner(&p, Rule::if_exists),
        })
    }

    pub(super) fn copy_from(&self, p: P) -> Result<CopyFrom> {
        let table = self.need(self.first_inner(&p, Rule::schema_name), &p, "table")?;
        let path = self.need(self.first_inner(&p, Rule::string_lit), &p, "path")?;
        let options = match self.first_inner(&p, Rule::options) {
            Some(o) => self.options(o)?,
            None => Vec::new(),
        };
        Ok(CopyFrom {
            table: self.ident(&table),
            path: self.string(&path)?,
            options,
        })
    }

    pub(super) fn maintain(&self, p: P) -> Result<Maintain> {
        let kind = if self.first_inner(&p, Rule::kw_compact).is_some() {
            MaintainKind::Compact
        } else {
            MaintainKind::Vacuum
        };
        let table = self
            .first_inner(&p, Rule::schema_name)
            .map(|t| self.ident(&t));
        Ok(Maintain { kind, table })
    }
}
