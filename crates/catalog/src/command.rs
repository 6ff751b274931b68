//! The replicated catalog state and the commands that change it.
//!
//! The state holds only pointers: namespaces with their properties, and for every table the
//! location of its current metadata file. Table metadata files are written by the proposer
//! before it proposes a command (the usual Iceberg pointer swap), so [`CatalogState::apply`] is a
//! pure function of the state and the command: every replica reaches the same state.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use iceberg::{NamespaceIdent, TableIdent};
use serde::{Deserialize, Serialize};

/// A change to the catalog, replicated through the raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates a namespace; its parent (for a nested namespace) must exist.
    CreateNamespace {
        namespace: NamespaceIdent,
        properties: BTreeMap<String, String>,
    },
    /// Drops a namespace that has no tables and no child namespaces.
    DropNamespace { namespace: NamespaceIdent },
    /// Replaces the full property set of a namespace.
    UpdateNamespaceProperties {
        namespace: NamespaceIdent,
        properties: BTreeMap<String, String>,
    },
    /// Points a new table at its first metadata file; fails if the table exists.
    CreateTable {
        ident: TableIdent,
        metadata_location: String,
    },
    /// Removes a table's pointer (its files are left alone).
    DropTable { ident: TableIdent },
    /// Moves a table's pointer to a new identifier.
    RenameTable {
        source: TableIdent,
        target: TableIdent,
    },
    /// Compare-and-set on several tables at once: all swaps apply, or none.
    Commit { changes: Vec<PointerSwap> },
}

/// One table's compare-and-set inside a [`Command::Commit`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerSwap {
    pub ident: TableIdent,
    /// The metadata location the table must point at now; `None` means it must not exist.
    pub expected: Option<String>,
    /// The metadata location the table points at afterwards.
    pub new_location: String,
}

/// Why the state machine refused a command. The state is unchanged when a command is rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    NamespaceNotFound {
        namespace: NamespaceIdent,
    },
    NamespaceAlreadyExists {
        namespace: NamespaceIdent,
    },
    NamespaceNotEmpty {
        namespace: NamespaceIdent,
        tables: usize,
        child_namespaces: usize,
    },
    TableNotFound {
        ident: TableIdent,
    },
    TableAlreadyExists {
        ident: TableIdent,
    },
    /// A compare-and-set failed: the table does not point where the proposer expected.
    Conflict {
        ident: TableIdent,
        expected: Option<String>,
        actual: Option<String>,
    },
    /// The command itself is malformed (e.g. the same table twice in one commit).
    Invalid {
        reason: String,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NamespaceNotFound { namespace } => {
                write!(f, "namespace {namespace} does not exist")
            }
            Rejection::NamespaceAlreadyExists { namespace } => {
                write!(f, "namespace {namespace} already exists")
            }
            Rejection::NamespaceNotEmpty {
                namespace,
                tables,
                child_namespaces,
            } => write!(
                f,
                "namespace {namespace} is not empty: {tables} tables, {child_namespaces} child namespaces"
            ),
            Rejection::TableNotFound { ident } => write!(f, "table {ident} does not exist"),
            Rejection::TableAlreadyExists { ident } => write!(f, "table {ident} already exists"),
            Rejection::Conflict {
                ident,
                expected,
                actual,
            } => write!(
                f,
                "table {ident} changed concurrently: expected metadata {}, found {}",
                expected.as_deref().unwrap_or("<no table>"),
                actual.as_deref().unwrap_or("<no table>")
            ),
            Rejection::Invalid { reason } => write!(f, "invalid command: {reason}"),
        }
    }
}

/// What applying one log entry produced: `Ok` or the reason the command was refused.
pub type CommandResponse = Result<(), Rejection>;

/// The replicated catalog: namespaces and table pointers.
///
/// Maps are ordered so that serialized snapshots are deterministic. JSON object keys must be
/// strings, so both maps serialize as lists of pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogState {
    #[serde(with = "pairs")]
    namespaces: BTreeMap<NamespaceIdent, BTreeMap<String, String>>,
    #[serde(with = "pairs")]
    tables: BTreeMap<TableIdent, String>,
}

impl CatalogState {
    /// Applies `command`. Deterministic, no I/O; a rejected command leaves the state unchanged.
    pub fn apply(&mut self, command: &Command) -> CommandResponse {
        match command {
            Command::CreateNamespace {
                namespace,
                properties,
            } => self.create_namespace(namespace, properties),
            Command::DropNamespace { namespace } => self.drop_namespace(namespace),
            Command::UpdateNamespaceProperties {
                namespace,
                properties,
            } => {
                let current = self.namespaces.get_mut(namespace).ok_or_else(|| {
                    Rejection::NamespaceNotFound {
                        namespace: namespace.clone(),
                    }
                })?;
                *current = properties.clone();
                Ok(())
            }
            Command::CreateTable {
                ident,
                metadata_location,
            } => {
                self.check_can_insert_table(ident)?;
                self.tables.insert(ident.clone(), metadata_location.clone());
                Ok(())
            }
            Command::DropTable { ident } => match self.tables.remove(ident) {
                Some(_) => Ok(()),
                None => Err(self.table_missing(ident)),
            },
            Command::RenameTable { source, target } => {
                if !self.tables.contains_key(source) {
                    return Err(self.table_missing(source));
                }
                self.check_can_insert_table(target)?;
                let location = self.tables.remove(source).expect("checked above");
                self.tables.insert(target.clone(), location);
                Ok(())
            }
            Command::Commit { changes } => self.commit(changes),
        }
    }

    fn create_namespace(
        &mut self,
        namespace: &NamespaceIdent,
        properties: &BTreeMap<String, String>,
    ) -> CommandResponse {
        if self.namespaces.contains_key(namespace) {
            return Err(Rejection::NamespaceAlreadyExists {
                namespace: namespace.clone(),
            });
        }
        if let Some(parent) = namespace.parent()
            && !self.namespaces.contains_key(&parent)
        {
            return Err(Rejection::NamespaceNotFound { namespace: parent });
        }
        self.namespaces
            .insert(namespace.clone(), properties.clone());
        Ok(())
    }

    fn drop_namespace(&mut self, namespace: &NamespaceIdent) -> CommandResponse {
        if !self.namespaces.contains_key(namespace) {
            return Err(Rejection::NamespaceNotFound {
                namespace: namespace.clone(),
            });
        }
        let tables = self.tables_in(namespace).count();
        let child_namespaces = self.child_namespaces(namespace).count();
        if tables > 0 || child_namespaces > 0 {
            return Err(Rejection::NamespaceNotEmpty {
                namespace: namespace.clone(),
                tables,
                child_namespaces,
            });
        }
        self.namespaces.remove(namespace);
        Ok(())
    }

    fn commit(&mut self, changes: &[PointerSwap]) -> CommandResponse {
        // Validate every swap before touching anything, so that the commit is all or nothing.
        let mut seen = std::collections::BTreeSet::new();
        for swap in changes {
            if !seen.insert(&swap.ident) {
                return Err(Rejection::Invalid {
                    reason: format!("table {} appears twice in one commit", swap.ident),
                });
            }
            if !self.namespaces.contains_key(&swap.ident.namespace) {
                return Err(Rejection::NamespaceNotFound {
                    namespace: swap.ident.namespace.clone(),
                });
            }
            let actual = self.tables.get(&swap.ident);
            if actual != swap.expected.as_ref() {
                return Err(Rejection::Conflict {
                    ident: swap.ident.clone(),
                    expected: swap.expected.clone(),
                    actual: actual.cloned(),
                });
            }
        }
        for swap in changes {
            self.tables
                .insert(swap.ident.clone(), swap.new_location.clone());
        }
        Ok(())
    }

    fn check_can_insert_table(&self, ident: &TableIdent) -> CommandResponse {
        if !self.namespaces.contains_key(&ident.namespace) {
            return Err(Rejection::NamespaceNotFound {
                namespace: ident.namespace.clone(),
            });
        }
        if self.tables.contains_key(ident) {
            return Err(Rejection::TableAlreadyExists {
                ident: ident.clone(),
            });
        }
        Ok(())
    }

    fn table_missing(&self, ident: &TableIdent) -> Rejection {
        if self.namespaces.contains_key(&ident.namespace) {
            Rejection::TableNotFound {
                ident: ident.clone(),
            }
        } else {
            Rejection::NamespaceNotFound {
                namespace: ident.namespace.clone(),
            }
        }
    }

    /// Whether the namespace exists.
    pub fn namespace_exists(&self, namespace: &NamespaceIdent) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// The namespace's properties, or `None` when it does not exist.
    pub fn namespace_properties(
        &self,
        namespace: &NamespaceIdent,
    ) -> Option<HashMap<String, String>> {
        self.namespaces
            .get(namespace)
            .map(|properties| properties.clone().into_iter().collect())
    }

    /// Top-level namespaces (`parent == None`) or the direct children of `parent`, in order.
    pub fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> Vec<NamespaceIdent> {
        match parent {
            None => self
                .namespaces
                .keys()
                .filter(|namespace| namespace.len() == 1)
                .cloned()
                .collect(),
            Some(parent) => self.child_namespaces(parent).cloned().collect(),
        }
    }

    fn child_namespaces<'a>(
        &'a self,
        parent: &'a NamespaceIdent,
    ) -> impl Iterator<Item = &'a NamespaceIdent> + 'a {
        self.namespaces.keys().filter(move |namespace| {
            namespace.len() == parent.len() + 1 && namespace.starts_with(parent)
        })
    }

    fn tables_in<'a>(
        &'a self,
        namespace: &'a NamespaceIdent,
    ) -> impl Iterator<Item = &'a TableIdent> + 'a {
        self.tables
            .keys()
            .filter(move |ident| &ident.namespace == namespace)
    }

    /// Tables of one namespace, in order.
    pub fn list_tables(&self, namespace: &NamespaceIdent) -> Vec<TableIdent> {
        self.tables_in(namespace).cloned().collect()
    }

    /// The table's current metadata location, or `None` when it does not exist.
    pub fn table_location(&self, ident: &TableIdent) -> Option<&str> {
        self.tables.get(ident).map(String::as_str)
    }

    /// Every table's current metadata location.
    pub fn table_locations(&self) -> &BTreeMap<TableIdent, String> {
        &self.tables
    }
}

/// Serializes a map as a list of `[key, value]` pairs (JSON keys must be strings).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K, V, S>(map: &BTreeMap<K, V>, serializer: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        V: Serialize,
        S: Serializer,
    {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let pairs = Vec::<(K, V)>::deserialize(deserializer)?;
        let expected = pairs.len();
        let map: BTreeMap<K, V> = pairs.into_iter().collect();
        if map.len() != expected {
            return Err(serde::de::Error::custom("duplicate key in catalog state"));
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(parts: &[&str]) -> NamespaceIdent {
        NamespaceIdent::from_strs(parts).unwrap()
    }

    fn table(namespace: &str, name: &str) -> TableIdent {
        TableIdent::new(ns(&[namespace]), name.to_string())
    }

    fn create_ns(state: &mut CatalogState, parts: &[&str]) -> CommandResponse {
        state.apply(&Command::CreateNamespace {
            namespace: ns(parts),
            properties: BTreeMap::new(),
        })
    }

    fn create_table(
        state: &mut CatalogState,
        ident: &TableIdent,
        location: &str,
    ) -> CommandResponse {
        state.apply(&Command::CreateTable {
            ident: ident.clone(),
            metadata_location: location.to_string(),
        })
    }

    #[test]
    fn namespaces_nest_and_drop_only_when_empty() {
        let mut state = CatalogState::default();
        assert_eq!(
            create_ns(&mut state, &["a", "b"]),
            Err(Rejection::NamespaceNotFound {
                namespace: ns(&["a"])
            })
        );
        create_ns(&mut state, &["a"]).unwrap();
        create_ns(&mut state, &["a", "b"]).unwrap();
        create_ns(&mut state, &["c"]).unwrap();
        assert_eq!(
            create_ns(&mut state, &["a"]),
            Err(Rejection::NamespaceAlreadyExists {
                namespace: ns(&["a"])
            })
        );
        assert_eq!(state.list_namespaces(None), vec![ns(&["a"]), ns(&["c"])]);
        assert_eq!(
            state.list_namespaces(Some(&ns(&["a"]))),
            vec![ns(&["a", "b"])]
        );
        assert!(matches!(
            state.apply(&Command::DropNamespace {
                namespace: ns(&["a"])
            }),
            Err(Rejection::NamespaceNotEmpty {
                child_namespaces: 1,
                ..
            })
        ));
        create_table(&mut state, &table("c", "t"), "loc").unwrap();
        assert!(matches!(
            state.apply(&Command::DropNamespace {
                namespace: ns(&["c"])
            }),
            Err(Rejection::NamespaceNotEmpty { tables: 1, .. })
        ));
        state
            .apply(&Command::DropNamespace {
                namespace: ns(&["a", "b"]),
            })
            .unwrap();
        state
            .apply(&Command::DropNamespace {
                namespace: ns(&["a"]),
            })
            .unwrap();
        assert_eq!(state.list_namespaces(None), vec![ns(&["c"])]);
    }

    #[test]
    fn commit_applies_all_swaps_or_none() {
        let mut state = CatalogState::default();
        create_ns(&mut state, &["g"]).unwrap();
        let a = table("g", "a");
        let b = table("g", "b");
        create_table(&mut state, &a, "a0").unwrap();
        create_table(&mut state, &b, "b0").unwrap();
        let before = state.clone();

        // The second swap's expectation is stale: neither table may move.
        let rejected = state.apply(&Command::Commit {
            changes: vec![
                PointerSwap {
                    ident: a.clone(),
                    expected: Some("a0".into()),
                    new_location: "a1".into(),
                },
                PointerSwap {
                    ident: b.clone(),
                    expected: Some("stale".into()),
                    new_location: "b1".into(),
                },
            ],
        });
        assert_eq!(
            rejected,
            Err(Rejection::Conflict {
                ident: b.clone(),
                expected: Some("stale".into()),
                actual: Some("b0".into()),
            })
        );
        assert_eq!(state, before);

        state
            .apply(&Command::Commit {
                changes: vec![
                    PointerSwap {
                        ident: a.clone(),
                        expected: Some("a0".into()),
                        new_location: "a1".into(),
                    },
                    PointerSwap {
                        ident: table("g", "new"),
                        expected: None,
                        new_location: "n0".into(),
                    },
                ],
            })
            .unwrap();
        assert_eq!(state.table_location(&a), Some("a1"));
        assert_eq!(state.table_location(&b), Some("b0"));
        assert_eq!(state.table_location(&table("g", "new")), Some("n0"));

        let duplicate = PointerSwap {
            ident: b.clone(),
            expected: Some("b0".into()),
            new_location: "b1".into(),
        };
        assert!(matches!(
            state.apply(&Command::Commit {
                changes: vec![duplicate.clone(), duplicate]
            }),
            Err(Rejection::Invalid { .. })
        ));
        assert_eq!(state.table_location(&b), Some("b0"));
    }

    #[test]
    fn rename_and_drop_tables() {
        let mut state = CatalogState::default();
        create_ns(&mut state, &["g"]).unwrap();
        create_ns(&mut state, &["h"]).unwrap();
        let a = table("g", "a");
        let moved = table("h", "moved");
        create_table(&mut state, &a, "a0").unwrap();
        assert_eq!(
            create_table(&mut state, &a, "again"),
            Err(Rejection::TableAlreadyExists { ident: a.clone() })
        );
        state
            .apply(&Command::RenameTable {
                source: a.clone(),
                target: moved.clone(),
            })
            .unwrap();
        assert_eq!(state.table_location(&a), None);
        assert_eq!(state.table_location(&moved), Some("a0"));
        assert_eq!(
            state.apply(&Command::DropTable { ident: a.clone() }),
            Err(Rejection::TableNotFound { ident: a })
        );
        state.apply(&Command::DropTable { ident: moved }).unwrap();
        assert!(state.table_locations().is_empty());
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut state = CatalogState::default();
        create_ns(&mut state, &["g"]).unwrap();
        state
            .apply(&Command::UpdateNamespaceProperties {
                namespace: ns(&["g"]),
                properties: BTreeMap::from([("k".to_string(), "v".to_string())]),
            })
            .unwrap();
        create_table(&mut state, &table("g", "t"), "file:///x/metadata/0.json").unwrap();
        let json = serde_json::to_vec(&state).unwrap();
        let back: CatalogState = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, state);
        assert_eq!(
            back.namespace_properties(&ns(&["g"])).unwrap().get("k"),
            Some(&"v".to_string())
        );
    }
}
