//! Who may call: a handshake with HTTP basic credentials returns a bearer token, and each
//! later call names its session by that token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use contextdb_engine::{Database, Session};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::config::User;

/// Sessions (tokens) kept at once; the least recently used one goes first.
pub const MAX_SESSIONS: usize = 4096;
/// A token unused this long is forgotten (its session's settings with it).
pub const SESSION_IDLE: Duration = Duration::from_secs(60 * 60);

/// The Argon2id hash of `password`, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `hash` is a PHC string this server can check passwords against.
pub fn check_hash(hash: &str) -> Result<(), String> {
    PasswordHash::new(hash).map(|_| ()).map_err(|e| {
        format!("not an Argon2 PHC string ({e}); make one with `contextdb hash-password`")
    })
}

/// Whether `password` matches `hash`.
pub fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

struct Entry {
    session: Arc<Session>,
    user: String,
    used: Instant,
}

/// The users and the sessions their tokens name.
pub struct Auth {
    db: Arc<Database>,
    users: HashMap<String, String>,
    sessions: Mutex<HashMap<String, Entry>>,
}

impl Auth {
    pub fn new(db: Arc<Database>, users: &[User]) -> Auth {
        Auth {
            db,
            users: users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone()))
                .collect(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether anyone may call without credentials.
    pub fn open(&self) -> bool {
        self.users.is_empty()
    }

    pub fn open_sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Checks the handshake's `authorization: Basic ...` header and returns a new token for
    /// a new session. With no users configured, any (or no) credentials are accepted.
    pub fn handshake(&self, metadata: &MetadataMap) -> Result<(String, String), Status> {
        let user = match basic_credentials(metadata)? {
            Some((user, password)) => {
                if !self.open() {
                    let known = self.users.get(&user);
                    // Verify against some hash even for an unknown name, so the answer takes
                    // as long either way.
                    let hash = known.map(String::as_str).unwrap_or(DUMMY_HASH);
                    if !verify(hash, &password) || known.is_none() {
                        return Err(Status::unauthenticated("invalid user name or password"));
                    }
                }
                user
            }
            None if self.open() => "anonymous".to_string(),
            None => {
                return Err(Status::unauthenticated(
                    "the handshake needs `authorization: Basic ...` credentials",
                ));
            }
        };
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, e| e.used.elapsed() < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(t, _)| t.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            token.clone(),
            Entry {
                session: Arc::new(Session::new(self.db.clone())),
                user: user.clone(),
                used: Instant::now(),
            },
        );
        Ok((token, user))
    }

    /// The session a call's bearer token names. Without a token: refused when users are
    /// configured, else a fresh session for this call alone.
    pub fn session(&self, metadata: &MetadataMap) -> Result<(Arc<Session>, String), Status> {
        let Some(value) = metadata.get("authorization") else {
            if self.open() {
                return Ok((
                    Arc::new(Session::new(self.db.clone())),
                    "anonymous".to_string(),
                ));
            }
            return Err(Status::unauthenticated(
                "no bearer token: authenticate with a handshake first",
            ));
        };
        let Some(token) = strip_scheme(text(value)?, "Bearer") else {
            return Err(Status::unauthenticated(
                "the authorization header must hold `Bearer <token>` from the handshake",
            ));
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get_mut(token.trim()) {
            Some(entry) if entry.used.elapsed() < SESSION_IDLE => {
                entry.used = Instant::now();
                Ok((entry.session.clone(), entry.user.clone()))
            }
            _ => Err(Status::unauthenticated(
                "unknown or expired token: authenticate again",
            )),
        }
    }
}

/// A valid hash no password matches, verified for unknown user names.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Wv+6ioLm7P6nWR4BcG4aodqyOPVQbT1+qjh3ReQuhk";

fn text(value: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>) -> Result<&str, Status> {
    value
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not text"))
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn basic_credentials(metadata: &MetadataMap) -> Result<Option<(String, String)>, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let Some(encoded) = strip_scheme(text(value)?, "Basic") else {
        return Err(Status::unauthenticated(
            "the handshake takes `authorization: Basic <base64 of name:password>`",
        ));
    };
    // Clients differ on padding (Go's Flight client sends none).
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let encoded = encoded.trim();
    let decoded = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| Status::unauthenticated("basic credentials are not base64 text"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| Status::unauthenticated("basic credentials are name:password"))?;
    Ok(Some((user.to_string(), password.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_parses_and_matches_nothing_plausible() {
        check_hash(DUMMY_HASH).unwrap();
        assert!(!verify(DUMMY_HASH, ""));
        assert!(!verify(DUMMY_HASH, "password"));
        assert!(check_hash("plain").is_err());
    }
}
