//! Engine errors as gRPC statuses: the code says whose fault it is.

use contextdb_engine::{Error, ErrorKind};
use tonic::{Code, Status};

/// The gRPC code of an engine error. Syntax and plan errors are the caller's
/// (INVALID_ARGUMENT), except a plan error about a name that does or does not exist
/// (ALREADY_EXISTS, NOT_FOUND); limits are RESOURCE_EXHAUSTED; a lost commit race is ABORTED
/// (retry); only a bug is INTERNAL.
pub fn code(e: &Error) -> Code {
    match e.kind {
        ErrorKind::Syntax => Code::InvalidArgument,
        ErrorKind::Plan | ErrorKind::Execution => {
            // The engine says which name in its messages; these are its phrasings.
            let m = e.message.to_ascii_lowercase();
            if m.contains("already exists") {
                Code::AlreadyExists
            } else if m.contains("does not exist")
                || m.contains("not found")
                || m.contains("unknown table")
                || m.contains("unknown label")
                || m.contains("no such")
            {
                Code::NotFound
            } else {
                Code::InvalidArgument
            }
        }
        ErrorKind::Resource => Code::ResourceExhausted,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status of an engine error; its message starts with the kind and `line:column` when
/// the error has a position, then the snippet under it.
pub fn status(e: &Error) -> Status {
    let mut message = e.kind.as_str().to_string();
    if let Some((line, column)) = e.position {
        message.push_str(&format!(" at {line}:{column}"));
    }
    message.push_str(": ");
    message.push_str(&e.message);
    if let Some(detail) = &e.detail {
        message.push('\n');
        message.push_str(detail);
    }
    Status::new(code(e), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_say_whose_fault() {
        let syntax = Error::new(ErrorKind::Syntax, "expected RETURN").at((1, 8));
        let s = status(&syntax);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "syntax error at 1:8: expected RETURN");
        assert_eq!(
            code(&Error::plan("table `t` already exists")),
            Code::AlreadyExists
        );
        assert_eq!(code(&Error::plan("table 'x' not found")), Code::NotFound);
        assert_eq!(
            code(&Error::new(ErrorKind::Resource, "hot tier budget")),
            Code::ResourceExhausted
        );
        assert_eq!(code(&Error::internal("bug")), Code::Internal);
    }
}
