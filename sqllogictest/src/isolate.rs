//! Runs one test case on its own thread and runtime, with a time limit.
//!
//! A tokio timeout alone cannot stop a case whose thread is stuck in synchronous code, so
//! each case gets a thread and the caller stops waiting for it after the limit. A case that
//! timed out is left running; the process ends when the runner's `main` returns.

use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Once, mpsc};
use std::time::Duration;

/// Worker threads of each case's runtime: enough for the engine's own tasks to make progress
/// beside the case's future.
const CASE_WORKER_THREADS: usize = 2;

/// How a case ended when it did not return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abort {
    TimedOut(Duration),
    Panicked(String),
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abort::TimedOut(limit) => write!(f, "timed out after {}s", limit.as_secs_f64()),
            Abort::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Prefix of the case threads' names; panics elsewhere go to the usual hook.
const CASE_THREAD_PREFIX: &str = "case ";

/// Keeps panic messages of case threads for the report instead of printing them as they
/// happen: hundreds of cases may panic while the engine grows.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if thread
                .name()
                .is_some_and(|n| n.starts_with(CASE_THREAD_PREFIX))
            {
                let message = info.to_string();
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `case` (a future made on the new thread) on a fresh multi-threaded runtime, waiting
/// at most `limit`.
pub fn run<T, F, Fut>(name: &str, limit: Duration, case: F) -> Result<T, Abort>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    install_panic_hook();
    let (sender, receiver) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name(format!("{CASE_THREAD_PREFIX}{name}"))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(CASE_WORKER_THREADS)
                    .thread_name(format!("{CASE_THREAD_PREFIX}worker"))
                    .enable_all()
                    .build()
                    .expect("a tokio runtime starts");
                let value = runtime.block_on(case());
                runtime.shutdown_timeout(Duration::from_secs(1));
                value
            }));
            let outcome = outcome.map_err(|payload| {
                let recorded = LAST_PANIC.with(|last| last.borrow_mut().take());
                Abort::Panicked(recorded.unwrap_or_else(|| panic_text(payload.as_ref())))
            });
            // The receiver is gone when the caller stopped waiting; nothing to do then.
            let _ = sender.send(outcome);
        });
    if let Err(e) = spawned {
        return Err(Abort::Panicked(format!("cannot start a thread: {e}")));
    }
    match receiver.recv_timeout(limit) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Abort::TimedOut(limit)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Abort::Panicked(
            "the case's thread ended without a result".to_owned(),
        )),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value() {
        assert_eq!(run("ok", Duration::from_secs(5), || async { 7 }), Ok(7));
    }

    #[test]
    fn reports_panics_with_their_message() {
        let outcome: Result<(), Abort> = run("panics", Duration::from_secs(5), || async {
            panic!("boom");
        });
        match outcome {
            Err(Abort::Panicked(message)) => assert!(message.contains("boom"), "{message}"),
            other => panic!("expected a panic, got {other:?}"),
        }
    }

    #[test]
    fn stops_waiting_for_a_stuck_case() {
        let limit = Duration::from_millis(200);
        let outcome = run("stuck", limit, || async {
            // Synchronous blocking, which a tokio timeout could not interrupt.
            std::thread::sleep(Duration::from_secs(5));
        });
        assert_eq!(outcome, Err(Abort::TimedOut(limit)));
    }
}
