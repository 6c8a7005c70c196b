//! Length-prefixed Kafka frames: a big-endian `i32` size followed by that many bytes.
//!
//! The size is checked against a configured bound *before* the body is buffered, so a
//! client announcing a 2 GiB frame costs nothing but the four bytes it sent.

use bytes::{Buf, Bytes, BytesMut};

/// Why a frame could not be taken from the buffer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The announced size is negative: the peer is not speaking Kafka.
    #[error("frame size {0} is negative")]
    Negative(i32),
    /// The announced size is above the configured bound.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Takes one complete frame body off the front of `buf`, if it is all there.
///
/// Returns `Ok(None)` when more bytes are needed; `buf` is left untouched then.
pub fn split_frame(buf: &mut BytesMut, limit: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = peek_size(buf, limit)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// Reads the size prefix, if present, and bounds it.
pub fn peek_size(buf: &[u8], limit: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    Ok(Some(size))
}

/// Prepends the size prefix to an encoded body.
pub fn write_frame(out: &mut BytesMut, body: &[u8]) {
    out.reserve(4 + body.len());
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_whole_frame() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 5, 1, 2][..]);
        assert_eq!(split_frame(&mut buf, 100).unwrap(), None);
        buf.extend_from_slice(&[3, 4, 5, 9]);
        let frame = split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(&frame[..], &[1, 2, 3, 4, 5]);
        assert_eq!(&buf[..], &[9]);
    }

    #[test]
    fn rejects_oversize_and_negative_before_buffering() {
        let mut buf = BytesMut::from(&(1_000_000i32).to_be_bytes()[..]);
        assert_eq!(
            split_frame(&mut buf, 1000),
            Err(FrameError::TooLarge {
                size: 1_000_000,
                limit: 1000
            })
        );
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(split_frame(&mut buf, 1000), Err(FrameError::Negative(-1)));
    }

    #[test]
    fn round_trips() {
        let mut out = BytesMut::new();
        write_frame(&mut out, b"hello");
        write_frame(&mut out, b"");
        assert_eq!(&split_frame(&mut out, 10).unwrap().unwrap()[..], b"hello");
        assert_eq!(&split_frame(&mut out, 10).unwrap().unwrap()[..], b"");
        assert!(out.is_empty());
    }
}
