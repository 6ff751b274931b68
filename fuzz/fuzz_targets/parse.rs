//! The parser must return `Ok` or `Err` for any UTF-8 input; a panic, abort or stack
//! overflow is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Formatting the error exercises the snippet/caret code too.
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = contextql::parse(text)
    {
        let _ = e.to_string();
    }
});
