//! What a Flight SQL bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`) asks of the
//! engine: the table, what to do when it exists or not, and the kind of table to create.
//!
//! Flight SQL says nothing of graphs, so the kind of a table an ingest creates comes from
//! ContextDB's own options, in the command's `options` map or, for clients that cannot set
//! that map (ADBC sends none), in request headers:
//!
//! | option                  | header                     | meaning                        |
//! |-------------------------|----------------------------|--------------------------------|
//! | `contextdb.kind`        | `x-contextdb-kind`         | `node`, `edge` or `table`      |
//! | `contextdb.primary_key` | `x-contextdb-primary-key`  | a node (or SQL) table's key    |
//! | `contextdb.from`        | `x-contextdb-from`         | an edge table's source label   |
//! | `contextdb.to`          | `x-contextdb-to`           | an edge table's target label   |

use std::collections::HashMap;

use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use contextdb_engine::{DEFAULT_CATALOG, IfExists, IfMissing, Ingest, NewTable};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// ContextDB's ingest options: (option key, header name).
const OPTIONS: [(&str, &str); 4] = [
    ("contextdb.kind", "x-contextdb-kind"),
    ("contextdb.primary_key", "x-contextdb-primary-key"),
    ("contextdb.from", "x-contextdb-from"),
    ("contextdb.to", "x-contextdb-to"),
];

/// The engine's ingest for `command`, with the options of its map or of `headers`.
pub fn target(command: &CommandStatementIngest, headers: &MetadataMap) -> Result<Ingest, Status> {
    if command.temporary {
        return Err(Status::invalid_argument(
            "ContextDB has no temporary tables; ingest into a table and drop it after",
        ));
    }
    if command.transaction_id.is_some() {
        return Err(Status::invalid_argument(
            "ContextDB has no transactions: each ingest commits on its own, atomically",
        ));
    }
    if let Some(catalog) = command.catalog.as_deref().filter(|c| !c.is_empty())
        && catalog != DEFAULT_CATALOG
    {
        return Err(Status::not_found(format!(
            "catalog `{catalog}` does not exist (the catalog is `{DEFAULT_CATALOG}`)"
        )));
    }
    if command.table.is_empty() {
        return Err(Status::invalid_argument("the ingest names no table"));
    }
    let definition = command.table_definition_options.unwrap_or_default();
    let if_missing = match TableNotExistOption::try_from(definition.if_not_exist) {
        Ok(TableNotExistOption::Create) => IfMissing::Create,
        Ok(TableNotExistOption::Fail) => IfMissing::Fail,
        _ => {
            return Err(Status::invalid_argument(
                "the ingest does not say what to do when the table does not exist \
                 (table_definition_options.if_not_exist: CREATE or FAIL)",
            ));
        }
    };
    let if_exists = match TableExistsOption::try_from(definition.if_exists) {
        Ok(TableExistsOption::Fail) => IfExists::Fail,
        Ok(TableExistsOption::Append) => IfExists::Append,
        Ok(TableExistsOption::Replace) => IfExists::Replace,
        _ => {
            return Err(Status::invalid_argument(
                "the ingest does not say what to do when the table exists \
                 (table_definition_options.if_exists: FAIL, APPEND or REPLACE)",
            ));
        }
    };
    if let Some(unknown) = command
        .options
        .keys()
        .find(|k| !OPTIONS.iter().any(|(option, _)| option == k))
    {
        return Err(Status::invalid_argument(format!(
            "unknown ingest option `{unknown}` (ContextDB's are {})",
            OPTIONS.map(|(option, _)| option).join(", ")
        )));
    }
    let mut options = HashMap::new();
    for (option, header) in OPTIONS {
        let value = match command.options.get(option) {
            Some(value) => Some(value.clone()),
            None => match headers.get(header) {
                Some(value) => Some(
                    value
                        .to_str()
                        .map_err(|_| {
                            Status::invalid_argument(format!("header {header} is not text"))
                        })?
                        .to_string(),
                ),
                None => None,
            },
        };
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            options.insert(option, value);
        }
    }
    Ok(Ingest {
        schema: command.schema.clone().filter(|s| !s.is_empty()),
        table: command.table.clone(),
        if_exists,
        if_missing,
        new_table: new_table(&mut options)?,
    })
}

fn new_table(options: &mut HashMap<&str, String>) -> Result<Option<NewTable>, Status> {
    let kind = options.remove("contextdb.kind");
    let primary_key = options.remove("contextdb.primary_key");
    let from = options.remove("contextdb.from");
    let to = options.remove("contextdb.to");
    let missing = |what: &str, kind: &str| {
        Status::invalid_argument(format!(
            "an ingest creating a {kind} table needs {what} (option contextdb.{what})"
        ))
    };
    match kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("node") => {
            if from.is_some() || to.is_some() {
                return Err(Status::invalid_argument(
                    "contextdb.from and contextdb.to are for edge tables",
                ));
            }
            Ok(Some(NewTable::Node {
                primary_key: primary_key.ok_or_else(|| missing("primary_key", "node"))?,
            }))
        }
        Some("edge") => {
            if primary_key.is_some() {
                return Err(Status::invalid_argument(
                    "an edge table's key is its src and dst; contextdb.primary_key is for \
                     node and SQL tables",
                ));
            }
            Ok(Some(NewTable::Edge {
                from: from.ok_or_else(|| missing("from", "edge"))?,
                to: to.ok_or_else(|| missing("to", "edge"))?,
            }))
        }
        Some("table") | None => {
            if from.is_some() || to.is_some() {
                return Err(Status::invalid_argument(
                    "contextdb.from and contextdb.to are for edge tables (contextdb.kind=edge)",
                ));
            }
            Ok(match (kind, primary_key) {
                (None, None) => None,
                (_, primary_key) => Some(NewTable::Table { primary_key }),
            })
        }
        Some(other) => Err(Status::invalid_argument(format!(
            "contextdb.kind is node, edge or table, not `{other}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::sql::TableDefinitionOptions;

    fn command(options: &[(&str, &str)]) -> CommandStatementIngest {
        CommandStatementIngest {
            table_definition_options: Some(TableDefinitionOptions {
                if_not_exist: TableNotExistOption::Create as i32,
                if_exists: TableExistsOption::Append as i32,
            }),
            table: "Package".into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn options_and_headers_say_what_table_an_ingest_creates() {
        let none = MetadataMap::new();
        let t = target(
            &command(&[("contextdb.kind", "node"), ("contextdb.primary_key", "id")]),
            &none,
        )
        .unwrap();
        assert_eq!(
            t.new_table,
            Some(NewTable::Node {
                primary_key: "id".into()
            })
        );
        assert_eq!(
            (t.if_exists, t.if_missing),
            (IfExists::Append, IfMissing::Create)
        );
        // Headers, for ADBC; the command's options win over them.
        let mut headers = MetadataMap::new();
        headers.insert("x-contextdb-kind", "edge".parse().unwrap());
        headers.insert("x-contextdb-from", "Package".parse().unwrap());
        headers.insert("x-contextdb-to", "Tag".parse().unwrap());
        let t = target(&command(&[("contextdb.to", "Section")]), &headers).unwrap();
        assert_eq!(
            t.new_table,
            Some(NewTable::Edge {
                from: "Package".into(),
                to: "Section".into()
            })
        );
        assert_eq!(target(&command(&[]), &none).unwrap().new_table, None);

        for (options, says) in [
            (&[("contextdb.kind", "node")][..], "needs primary_key"),
            (
                &[("contextdb.kind", "edge"), ("contextdb.from", "A")],
                "needs to",
            ),
            (&[("contextdb.kind", "graph")], "not `graph`"),
            (&[("contextdb.from", "A")], "for edge tables"),
            (
                &[("batch_size", "10")],
                "unknown ingest option `batch_size`",
            ),
        ] {
            let e = target(&command(options), &none).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(says), "{options:?}: {}", e.message());
        }
        let mut unspecified = command(&[]);
        unspecified.table_definition_options = None;
        assert!(target(&unspecified, &none).is_err());
        let mut temporary = command(&[]);
        temporary.temporary = true;
        assert!(target(&temporary, &none).is_err());
        let mut other = command(&[]);
        other.catalog = Some("elsewhere".into());
        assert_eq!(
            target(&other, &none).unwrap_err().code(),
            tonic::Code::NotFound
        );
    }
}
