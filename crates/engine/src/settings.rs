//! Sessions and their settings: `SET` / `RESET` / `SHOW` of DataFusion's options
//! (`datafusion.*`) and `SET TIME ZONE`, kept per [`Session`] and applied to the SQL
//! statements it runs.
//!
//! ContextQL statements run on the database's shared DataFusion sessions (built once, see
//! `session.rs`), so session settings do not change them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use datafusion::common::config::{ConfigField, ConfigOptions, ExtensionOptions};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::registry::FunctionRegistry;

use crate::database::Database;
use crate::error::{Error, Result};
use crate::{Description, QueryStream, StatementResult};
use contextdb_planner::Params;
use contextdb_planner::var_length::{ContextQlOptions, PathLimits};

/// The most options one session may set (each is applied to every SQL statement it runs).
pub const MAX_SESSION_SETTINGS: usize = 256;

/// The most SQL statements one session may keep prepared.
pub const MAX_PREPARED_STATEMENTS: usize = 1024;

/// What a session keeps between statements: the DataFusion options it set, by their canonical
/// (lowercase) names, and its prepared SQL statements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    options: BTreeMap<String, String>,
    /// Name → the PREPARE statement's text, planned again (over the statement's snapshot) by
    /// each EXECUTE.
    prepared: BTreeMap<String, String>,
}

impl Settings {
    /// Sets `variable` (DataFusion's canonical name, as its SQL planner gives it) to `value`,
    /// after checking that DataFusion knows it and accepts the value.
    pub fn set(&mut self, variable: &str, value: &str) -> Result<()> {
        let variable = variable.to_ascii_lowercase();
        if variable.starts_with("datafusion.runtime.") {
            return Err(Error::plan(format!(
                "`{variable}` is a runtime setting shared by the whole database; it cannot be \
                 set per session"
            )));
        }
        if !variable.starts_with("datafusion.") && !variable.starts_with("contextql.") {
            let mut error = Error::plan(format!(
                "unknown setting `{variable}`: sessions set DataFusion's options \
                 (`datafusion.*`, see SHOW ALL), ContextQL's (`contextql.*`) and `TIME ZONE`"
            ));
            // What DataFusion itself says of the name.
            if let Err(e) = options().set(&variable, value) {
                error.datafusion_text = Some(e.strip_backtrace());
            }
            return Err(error);
        }
        options()
            .set(&variable, value)
            .map_err(|e| option_error("SET", &variable, e))?;
        if !self.options.contains_key(&variable) && self.options.len() >= MAX_SESSION_SETTINGS {
            return Err(Error::new(
                crate::ErrorKind::Resource,
                format!("a session sets at most {MAX_SESSION_SETTINGS} options"),
            ));
        }
        self.options.insert(variable, value.to_string());
        Ok(())
    }

    /// The limits of ContextQL's path patterns, from the session's `contextql.*` settings.
    pub fn path_limits(&self) -> PathLimits {
        let mut contextql = ContextQlOptions::default();
        for (variable, value) in &self.options {
            if let Some(key) = variable.strip_prefix("contextql.") {
                // Checked when set: a value kept here is one the options accept.
                if let Err(e) = ExtensionOptions::set(&mut contextql, key, value) {
                    tracing::error!(error = %e, variable, "a kept setting no longer applies");
                }
            }
        }
        PathLimits::from(&contextql)
    }

    /// Keeps `PREPARE name ...` (its text) under `name`; a name already kept is an error, as
    /// in DataFusion (DEALLOCATE it first).
    pub(crate) fn prepare(&mut self, name: &str, text: &str) -> Result<()> {
        if self.prepared.contains_key(name) {
            return Err(Error::plan(format!(
                "Prepared statement '{name}' already exists; DEALLOCATE it first"
            )));
        }
        if self.prepared.len() >= MAX_PREPARED_STATEMENTS {
            return Err(Error::new(
                crate::ErrorKind::Resource,
                format!("a session keeps at most {MAX_PREPARED_STATEMENTS} prepared statements"),
            ));
        }
        self.prepared.insert(name.to_string(), text.to_string());
        Ok(())
    }

    /// The PREPARE statement kept under `name`.
    pub(crate) fn prepared(&self, name: &str) -> Option<&str> {
        self.prepared.get(name).map(String::as_str)
    }

    /// Forgets the prepared statement `name`; whether there was one.
    pub(crate) fn deallocate(&mut self, name: &str) -> bool {
        self.prepared.remove(name).is_some()
    }

    /// Forgets what the session set for `variable` (back to the database's value). A name
    /// DataFusion does not know is an error, as in DataFusion.
    pub fn reset(&mut self, variable: &str) -> Result<()> {
        let variable = variable.to_ascii_lowercase();
        // Runtime settings are never set per session (see `set`): nothing to forget.
        if let Some(key) = variable.strip_prefix("contextql.") {
            // DataFusion resets no extension's option: forgetting it is the reset.
            if !ContextQlOptions::default()
                .entries()
                .iter()
                .any(|e| e.key == variable)
            {
                return Err(Error::plan(format!(
                    "RESET {variable}: unknown setting `{key}`; ContextQL's settings are {}",
                    ContextQlOptions::default()
                        .entries()
                        .iter()
                        .map(|e| e.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        } else if !variable.starts_with("datafusion.runtime.") {
            options()
                .reset(&variable)
                .map_err(|e| option_error("RESET", &variable, e))?;
        }
        self.options.remove(&variable);
        Ok(())
    }

    /// Applies the settings to a statement's own session state, and lets the functions that
    /// read options (`now()` and the time zone, ...) see them.
    pub(crate) fn apply(&self, state: &mut SessionState) -> Result<()> {
        if self.options.is_empty() {
            return Ok(());
        }
        for (variable, value) in &self.options {
            state.config_mut().options_mut().set(variable, value)?;
        }
        let options = state.config().options().clone();
        let updated: Vec<_> = state
            .scalar_functions()
            .values()
            .filter_map(|udf| udf.inner().with_updated_config(&options))
            .collect();
        for udf in updated {
            state.register_udf(Arc::new(udf))?;
        }
        Ok(())
    }
}

/// DataFusion's options with ContextQL's beside them, as a statement's session has them.
pub(crate) fn options() -> ConfigOptions {
    let mut options = ConfigOptions::default();
    options.extensions.insert(ContextQlOptions::default());
    options
}

/// DataFusion's refusal of an option name or value: a plan error that keeps DataFusion's own
/// text (what its users match on).
fn option_error(what: &str, variable: &str, e: datafusion::error::DataFusionError) -> Error {
    let mut error = Error::plan(format!("{what} {variable}: {e}"));
    error.datafusion_text = Some(e.strip_backtrace());
    error
}

/// A connection's view of a database: its statements share the session's settings. Any
/// number of sessions may use one database at once.
#[derive(Debug)]
pub struct Session {
    db: Arc<Database>,
    settings: Mutex<Settings>,
}

impl Session {
    pub fn new(db: Arc<Database>) -> Session {
        Session {
            db,
            settings: Mutex::new(Settings::default()),
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// What the session has set.
    pub fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `;`-separated statements, stopping at the first error (see `Database::execute`).
    pub async fn execute(&self, text: &str) -> Result<Vec<StatementResult>> {
        self.db
            .execute_in(text, &HashMap::new(), &self.settings)
            .await
    }

    /// Runs `;`-separated statements with parameters.
    pub async fn execute_with_params(
        &self,
        text: &str,
        params: &HashMap<String, serde_json::Value>,
    ) -> Result<Vec<StatementResult>> {
        self.db.execute_in(text, params, &self.settings).await
    }

    /// Runs one statement with typed parameter values (`"1"`, `"2"`, ... by position and
    /// names), as a client binding Arrow values sends them, and streams its rows.
    pub async fn query_typed(&self, statement: &str, params: &Params) -> Result<QueryStream> {
        self.db
            .query_typed_in(statement, params, &self.settings)
            .await
    }

    /// What `statement` returns and which parameters it takes, without running it.
    pub async fn describe(&self, statement: &str) -> Result<Description> {
        self.db.describe_in(statement, &self.settings).await
    }

    /// Runs one statement and streams its rows (see `Database::query`).
    pub async fn query(
        &self,
        statement: &str,
        params: &HashMap<String, serde_json::Value>,
    ) -> Result<QueryStream> {
        self.db.query_in(statement, params, &self.settings).await
    }
}
