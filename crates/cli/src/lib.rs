//! The `contextdb` command line: an interactive shell, scripts and bulk loading over the
//! embedded engine. The library part holds what the binary and the test runners share:
//! turning Arrow results into text ([`format`]), telling a statement's rows from the engine's
//! write and DDL reports ([`status`]), and the shell's Flight SQL client ([`remote`]). Scripts are split into statements by the engine's
//! [`contextdb_engine::route::split`].

pub mod format;
pub mod remote;
pub mod status;
