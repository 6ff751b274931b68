//! The server's settings: a TOML file, then `CONTEXTDB_*` environment variables, then flags,
//! each overriding the one before; what none of them sets takes its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where Flight SQL listens unless told otherwise: loopback only.
pub const DEFAULT_FLIGHT_ADDR: &str = "127.0.0.1:50051";
/// Where `/health` and `/metrics` listen unless told otherwise: loopback only.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8077";
/// The data directory unless told otherwise (the shell's default too).
pub const DEFAULT_DATA_DIR: &str = "contextdb-data";
/// Statements that may run at once; one more fails with RESOURCE_EXHAUSTED.
pub const DEFAULT_MAX_CONCURRENT_STATEMENTS: usize = 16;

/// Every setting, for `--help` and `docs/server.md`: (TOML key, environment variable, flag,
/// default, what it does).
pub const SETTINGS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "data_dir",
        "CONTEXTDB_DATA_DIR",
        "--data-dir",
        DEFAULT_DATA_DIR,
        "the database's directory (created when missing)",
    ),
    (
        "flight_addr",
        "CONTEXTDB_FLIGHT_ADDR",
        "--flight-addr",
        DEFAULT_FLIGHT_ADDR,
        "host:port of the Flight SQL (gRPC) listener; port 0 picks a free port",
    ),
    (
        "http_addr",
        "CONTEXTDB_HTTP_ADDR",
        "--http-addr",
        DEFAULT_HTTP_ADDR,
        "host:port of the HTTP listener for /health and /metrics; port 0 picks a free port",
    ),
    (
        "users",
        "CONTEXTDB_USERS",
        "--user",
        "none",
        "who may connect: in TOML `[[users]] name, password_hash` (an Argon2 PHC string from \
         `contextdb hash-password`); in the environment and flags NAME:PASSWORD (the \
         environment takes a comma-separated list, a flag repeats)",
    ),
    (
        "allow_remote_without_users",
        "CONTEXTDB_ALLOW_REMOTE_WITHOUT_USERS",
        "--allow-remote-without-users",
        "false",
        "bind a non-loopback address although no user is configured (anyone may connect)",
    ),
    (
        "tls.cert",
        "CONTEXTDB_TLS_CERT",
        "--tls-cert",
        "none",
        "PEM certificate chain; with tls.key, Flight SQL is served over TLS",
    ),
    (
        "tls.key",
        "CONTEXTDB_TLS_KEY",
        "--tls-key",
        "none",
        "PEM private key of the certificate",
    ),
    (
        "max_concurrent_statements",
        "CONTEXTDB_MAX_CONCURRENT_STATEMENTS",
        "--max-concurrent-statements",
        "16",
        "statements running at once (from planning to the last batch sent); one more fails \
         with RESOURCE_EXHAUSTED",
    ),
    (
        "log_format",
        "CONTEXTDB_LOG_FORMAT",
        "--log-format",
        "text",
        "`text` or `json`: one line per statement, with its duration and outcome",
    ),
];

/// A configuration that cannot be used; the message names the setting and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One user who may connect, with the Argon2 hash of their password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// A PHC string (`$argon2id$...`).
    pub password_hash: String,
}

/// Certificate and key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub flight_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub users: Vec<User>,
    pub allow_remote_without_users: bool,
    pub tls: Option<Tls>,
    pub max_concurrent_statements: usize,
    pub log_format: LogFormat,
}

/// What flags set (None / empty: not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub flight_addr: Option<String>,
    pub http_addr: Option<String>,
    /// NAME:PASSWORD, each.
    pub users: Vec<String>,
    pub allow_remote_without_users: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_concurrent_statements: Option<usize>,
    pub log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    flight_addr: Option<String>,
    http_addr: Option<String>,
    #[serde(default)]
    users: Vec<FileUser>,
    allow_remote_without_users: Option<bool>,
    tls: Option<FileTls>,
    max_concurrent_statements: Option<usize>,
    log_format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    name: String,
    password_hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: PathBuf,
    key: PathBuf,
}

impl ServerConfig {
    /// The configuration from the file named by `flags.config` (or `CONTEXTDB_CONFIG`), the
    /// environment as `env` reads it, and `flags`, in that order of precedence.
    pub fn resolve(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let file_path = flags
            .config
            .clone()
            .or_else(|| env("CONTEXTDB_CONFIG").map(PathBuf::from));
        let file = match &file_path {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let from_file = |key: &str| match &file_path {
            Some(path) => format!("`{key}` in {}", path.display()),
            None => key.to_string(),
        };

        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env("CONTEXTDB_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let addr = |flag: &Option<String>,
                    var: &str,
                    in_file: &Option<String>,
                    key: &str,
                    default: &str|
         -> Result<SocketAddr, ConfigError> {
            let (text, source) = if let Some(f) = flag {
                (f.clone(), format!("--{}", key.replace('_', "-")))
            } else if let Some(e) = env(var) {
                (e, var.to_string())
            } else if let Some(f) = in_file {
                (f.clone(), from_file(key))
            } else {
                (default.to_string(), "the default".to_string())
            };
            parse_addr(&text).map_err(|e| ConfigError(format!("{source}: {e}")))
        };
        let flight_addr = addr(
            &flags.flight_addr,
            "CONTEXTDB_FLIGHT_ADDR",
            &file.flight_addr,
            "flight_addr",
            DEFAULT_FLIGHT_ADDR,
        )?;
        let http_addr = addr(
            &flags.http_addr,
            "CONTEXTDB_HTTP_ADDR",
            &file.http_addr,
            "http_addr",
            DEFAULT_HTTP_ADDR,
        )?;

        // Users are not merged: the most precedent source that names any decides who may
        // connect, so a flag can stand in for the file's list.
        let users = if !flags.users.is_empty() {
            plain_users(flags.users.iter().map(String::as_str), "--user")?
        } else if let Some(list) = env("CONTEXTDB_USERS").filter(|l| !l.trim().is_empty()) {
            plain_users(list.split(','), "CONTEXTDB_USERS")?
        } else {
            let mut users = Vec::new();
            for u in file.users {
                crate::auth::check_hash(&u.password_hash).map_err(|e| {
                    ConfigError(format!(
                        "{}: user `{}`: {e}",
                        from_file("users.password_hash"),
                        u.name
                    ))
                })?;
                users.push(User {
                    name: u.name,
                    password_hash: u.password_hash,
                });
            }
            users
        };
        let allow_remote_without_users = flags.allow_remote_without_users
            || match env("CONTEXTDB_ALLOW_REMOTE_WITHOUT_USERS") {
                Some(v) => parse_bool(&v, "CONTEXTDB_ALLOW_REMOTE_WITHOUT_USERS")?,
                None => file.allow_remote_without_users.unwrap_or(false),
            };

        let cert = flags
            .tls_cert
            .clone()
            .or_else(|| env("CONTEXTDB_TLS_CERT").map(PathBuf::from))
            .or(file.tls.as_ref().map(|t| t.cert.clone()));
        let key = flags
            .tls_key
            .clone()
            .or_else(|| env("CONTEXTDB_TLS_KEY").map(PathBuf::from))
            .or(file.tls.as_ref().map(|t| t.key.clone()));
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(Tls { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "TLS needs both a certificate and a key (tls.cert and tls.key)".into(),
                ));
            }
        };

        let max_concurrent_statements = match flags.max_concurrent_statements {
            Some(n) => n,
            None => match env("CONTEXTDB_MAX_CONCURRENT_STATEMENTS") {
                Some(v) => v.trim().parse().map_err(|_| {
                    ConfigError(format!(
                        "CONTEXTDB_MAX_CONCURRENT_STATEMENTS: `{v}` is not a count"
                    ))
                })?,
                None => file
                    .max_concurrent_statements
                    .unwrap_or(DEFAULT_MAX_CONCURRENT_STATEMENTS),
            },
        };
        if max_concurrent_statements == 0 {
            return Err(ConfigError(
                "max_concurrent_statements must be at least 1".into(),
            ));
        }
        let log_format = match flags
            .log_format
            .clone()
            .or_else(|| env("CONTEXTDB_LOG_FORMAT"))
            .or(file.log_format)
            .as_deref()
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError(format!(
                    "log_format: `{other}` is neither `text` nor `json`"
                )));
            }
        };

        let config = ServerConfig {
            data_dir,
            flight_addr,
            http_addr,
            users,
            allow_remote_without_users,
            tls,
            max_concurrent_statements,
            log_format,
        };
        config.check_exposure()?;
        Ok(config)
    }

    /// A server anyone may use binds loopback only, unless told it may.
    fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.users.is_empty() && !self.allow_remote_without_users {
            for (name, addr) in [
                ("flight_addr", self.flight_addr),
                ("http_addr", self.http_addr),
            ] {
                if !addr.ip().is_loopback() {
                    return Err(ConfigError(format!(
                        "{name} {addr} is not a loopback address and no user is configured: \
                         configure users (--user NAME:PASSWORD) or pass \
                         --allow-remote-without-users to let anyone connect"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("`{text}` is not a host:port ({e})"))?
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

fn parse_bool(text: &str, source: &str) -> Result<bool, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError(format!(
            "{source}: `{text}` is not true or false"
        ))),
    }
}

/// NAME:PASSWORD pairs, hashed here: the plain passwords are not kept.
fn plain_users<'a>(
    pairs: impl Iterator<Item = &'a str>,
    source: &str,
) -> Result<Vec<User>, ConfigError> {
    let mut users: Vec<User> = Vec::new();
    for pair in pairs {
        let (name, password) = pair.trim().split_once(':').ok_or_else(|| {
            ConfigError(format!("{source}: a user is NAME:PASSWORD (got no `:`)"))
        })?;
        if name.is_empty() || password.is_empty() {
            return Err(ConfigError(format!(
                "{source}: a user needs a name and a password"
            )));
        }
        if users.iter().any(|u| u.name == name) {
            return Err(ConfigError(format!(
                "{source}: user `{name}` is given twice"
            )));
        }
        users.push(User {
            name: name.to_string(),
            password_hash: crate::auth::hash_password(password)
                .map_err(|e| ConfigError(format!("{source}: {e}")))?,
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn defaults_run_on_loopback() {
        let config = ServerConfig::resolve(&Flags::default(), &env(&[])).unwrap();
        assert_eq!(config.flight_addr.to_string(), DEFAULT_FLIGHT_ADDR);
        assert_eq!(config.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(config.users.is_empty());
        assert_eq!(config.tls, None);
        assert_eq!(
            config.max_concurrent_statements,
            DEFAULT_MAX_CONCURRENT_STATEMENTS
        );
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        std::fs::write(
            &file,
            "data_dir = 'from-file'\nflight_addr = '127.0.0.1:1111'\nhttp_addr = '127.0.0.1:2222'\n\
             max_concurrent_statements = 3\nlog_format = 'json'\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(file.clone()),
            flight_addr: Some("127.0.0.1:3333".into()),
            ..Flags::default()
        };
        let config = ServerConfig::resolve(
            &flags,
            &env(&[
                ("CONTEXTDB_FLIGHT_ADDR", "127.0.0.1:4444"),
                ("CONTEXTDB_HTTP_ADDR", "127.0.0.1:5555"),
            ]),
        )
        .unwrap();
        assert_eq!(config.flight_addr.port(), 3333, "flag over environment");
        assert_eq!(config.http_addr.port(), 5555, "environment over file");
        assert_eq!(config.data_dir, PathBuf::from("from-file"));
        assert_eq!(config.max_concurrent_statements, 3);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn users_come_hashed_and_remote_binds_need_them() {
        let remote = Flags {
            flight_addr: Some("0.0.0.0:0".into()),
            ..Flags::default()
        };
        let refused = ServerConfig::resolve(&remote, &env(&[])).unwrap_err();
        assert!(
            refused.0.contains("--allow-remote-without-users"),
            "{refused}"
        );
        let with_user = Flags {
            users: vec!["ada:secret".into()],
            ..remote.clone()
        };
        let config = ServerConfig::resolve(&with_user, &env(&[])).unwrap();
        assert_eq!(config.users[0].name, "ada");
        assert!(config.users[0].password_hash.starts_with("$argon2"));
        assert!(crate::auth::verify(
            &config.users[0].password_hash,
            "secret"
        ));
        assert!(!crate::auth::verify(
            &config.users[0].password_hash,
            "Secret"
        ));
        let allowed = Flags {
            allow_remote_without_users: true,
            ..remote
        };
        assert!(ServerConfig::resolve(&allowed, &env(&[])).is_ok());
    }

    #[test]
    fn bad_settings_name_their_source() {
        let e = ServerConfig::resolve(
            &Flags::default(),
            &env(&[("CONTEXTDB_HTTP_ADDR", "nowhere")]),
        )
        .unwrap_err();
        assert!(e.0.starts_with("CONTEXTDB_HTTP_ADDR:"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        std::fs::write(&file, "flight_adr = '127.0.0.1:1'\n").unwrap();
        let flags = Flags {
            config: Some(file),
            ..Flags::default()
        };
        let e = ServerConfig::resolve(&flags, &env(&[])).unwrap_err();
        assert!(e.0.contains("flight_adr"), "{e}");
        let e = ServerConfig::resolve(
            &Flags {
                users: vec!["nopassword".into()],
                ..Flags::default()
            },
            &env(&[]),
        )
        .unwrap_err();
        assert!(e.0.contains("NAME:PASSWORD"), "{e}");
    }
}
