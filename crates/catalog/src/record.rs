//! On-disk framing shared by every file in the raft directory.
//!
//! A record is `[len u32 LE][crc32 u32 LE][payload]`, the CRC covering the payload. The log is a
//! sequence of records; the vote, purge marker and snapshot files hold exactly one record each and
//! are replaced atomically (write a temporary file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old or the new version, never a mix.
//!
//! Every file operation goes through [`Fs`], so that power-failure tests can run the same code on
//! a file system that forgets unsynced writes.

use std::io;
use std::path::Path;

use contextdb_storage::fs::{Fs, write_file_atomic};

/// Bytes of the `[len][crc]` header in front of every payload.
pub(crate) const RECORD_HEADER_BYTES: usize = 8;

/// Largest payload of one log record. Catalog commands are pointer swaps of a few hundred bytes
/// each, so this is far above any legitimate entry and bounds what recovery will allocate for a
/// length read from a damaged header.
pub(crate) const MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;

/// Largest snapshot file payload (the whole catalog state: one pointer per table).
pub(crate) const MAX_SNAPSHOT_BYTES: u32 = 1024 * 1024 * 1024;

/// Appends one framed record holding `payload` to `out`.
pub(crate) fn encode_record(payload: &[u8], max_payload_bytes: u32, out: &mut Vec<u8>) {
    // A zero length is what zeroed bytes decode to (see `decode_record`), so it is never written.
    assert!(!payload.is_empty(), "record payloads are never empty");
    let len = u32::try_from(payload.len()).expect("record payload length fits in u32");
    assert!(
        len <= max_payload_bytes,
        "record payload of {len} bytes exceeds the limit of {max_payload_bytes}"
    );
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Result of decoding the record that starts at some offset of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A complete record whose CRC matches; the next record starts at `next_offset`.
    Record {
        payload: &'a [u8],
        next_offset: usize,
    },
    /// The offset is the end of the buffer.
    End,
    /// The bytes from the offset on are not a valid record: a torn write or damage.
    Invalid { reason: String },
}

/// Decodes the record starting at `offset` of `buf`.
pub(crate) fn decode_record(buf: &[u8], offset: usize, max_payload_bytes: u32) -> Decoded<'_> {
    assert!(
        offset <= buf.len(),
        "decode offset past the end of the buffer"
    );
    let rest = &buf[offset..];
    if rest.is_empty() {
        return Decoded::End;
    }
    if rest.len() < RECORD_HEADER_BYTES {
        return Decoded::Invalid {
            reason: format!(
                "short header: {} of {RECORD_HEADER_BYTES} bytes",
                rest.len()
            ),
        };
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len == 0 {
        // Never written: a file extended by a crash before its data reached the disk reads as
        // zeroes, whose header (length 0, CRC 0) would otherwise be a valid empty record.
        return Decoded::Invalid {
            reason: "zero-length record (zeroed bytes)".to_string(),
        };
    }
    if len > max_payload_bytes {
        return Decoded::Invalid {
            reason: format!("length {len} exceeds the limit of {max_payload_bytes}"),
        };
    }
    let end = RECORD_HEADER_BYTES + len as usize;
    if rest.len() < end {
        return Decoded::Invalid {
            reason: format!(
                "short payload: {} of {len} bytes",
                rest.len() - RECORD_HEADER_BYTES
            ),
        };
    }
    let payload = &rest[RECORD_HEADER_BYTES..end];
    if crc32fast::hash(payload) != crc {
        return Decoded::Invalid {
            reason: "CRC mismatch".to_string(),
        };
    }
    Decoded::Record {
        payload,
        next_offset: offset + end,
    }
}

/// Replaces `dir/name` with one record holding `payload`, atomically and durably.
pub(crate) fn write_framed_file_atomic(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    payload: &[u8],
    max_payload_bytes: u32,
) -> io::Result<()> {
    let mut framed = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    encode_record(payload, max_payload_bytes, &mut framed);
    write_file_atomic(fs, dir, name, &framed)
}

/// Reads a file written by [`write_framed_file_atomic`]; `None` when it does not exist.
///
/// These files are replaced by rename, so a file that does not hold exactly one valid record is
/// damage, not a torn write, and is reported as an error rather than ignored.
pub(crate) fn read_framed_file(
    fs: &dyn Fs,
    path: &Path,
    max_payload_bytes: u32,
) -> io::Result<Option<Vec<u8>>> {
    let bytes = match fs.read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match decode_record(&bytes, 0, max_payload_bytes) {
        Decoded::Record {
            payload,
            next_offset,
        } if next_offset == bytes.len() => Ok(Some(payload.to_vec())),
        Decoded::Record { .. } => Err(invalid_data(format!(
            "{}: trailing bytes after the record",
            path.display()
        ))),
        Decoded::End => Err(invalid_data(format!("{}: empty file", path.display()))),
        Decoded::Invalid { reason } => Err(invalid_data(format!("{}: {reason}", path.display()))),
    }
}

pub(crate) fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let mut buf = Vec::new();
        encode_record(b"hello", MAX_RECORD_BYTES, &mut buf);
        encode_record(b"!", MAX_RECORD_BYTES, &mut buf);
        let Decoded::Record {
            payload,
            next_offset,
        } = decode_record(&buf, 0, MAX_RECORD_BYTES)
        else {
            panic!("first record must decode");
        };
        assert_eq!(payload, b"hello");
        assert_eq!(
            decode_record(&buf, next_offset, MAX_RECORD_BYTES),
            Decoded::Record {
                payload: b"!",
                next_offset: buf.len()
            }
        );
        assert_eq!(
            decode_record(&buf, buf.len(), MAX_RECORD_BYTES),
            Decoded::End
        );

        // A flipped payload bit, a cut payload, a cut header and an absurd length are all invalid.
        let mut flipped = buf.clone();
        flipped[RECORD_HEADER_BYTES] ^= 1;
        assert!(matches!(
            decode_record(&flipped, 0, MAX_RECORD_BYTES),
            Decoded::Invalid { .. }
        ));
        assert!(matches!(
            decode_record(&buf[..RECORD_HEADER_BYTES + 2], 0, MAX_RECORD_BYTES),
            Decoded::Invalid { .. }
        ));
        assert!(matches!(
            decode_record(&buf[..3], 0, MAX_RECORD_BYTES),
            Decoded::Invalid { .. }
        ));
        assert!(matches!(decode_record(&buf, 0, 4), Decoded::Invalid { .. }));
        // Zeroed bytes (length 0, CRC 0) are not an empty record.
        assert!(matches!(
            decode_record(&[0; 16], 0, MAX_RECORD_BYTES),
            Decoded::Invalid { .. }
        ));
    }

    #[test]
    fn atomic_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let fs = contextdb_storage::fs::RealFs;
        let path = dir.path().join("f");
        assert_eq!(read_framed_file(&fs, &path, 64).unwrap(), None);
        write_framed_file_atomic(&fs, dir.path(), "f", b"one", 64).unwrap();
        write_framed_file_atomic(&fs, dir.path(), "f", b"two", 64).unwrap();
        assert_eq!(
            read_framed_file(&fs, &path, 64).unwrap(),
            Some(b"two".to_vec())
        );
        std::fs::write(&path, b"garbage!!").unwrap();
        assert!(read_framed_file(&fs, &path, 64).is_err());
    }
}
