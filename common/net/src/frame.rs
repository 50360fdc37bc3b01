//! Length-prefixed frames: the only thing that travels on a lamina-net stream.
//!
//! ```text
//! frame  = len:u32 LE | kind:u8 | id:u64 LE | body[len]
//! ```
//!
//! `len` counts the body only; a receiver rejects `len` above its limit as soon as the
//! 13-byte header has arrived, before buffering the body, and its buffer grows only with
//! the bytes that actually arrive (a header claiming 4 GiB costs 13 bytes). Kinds:
//!
//! | kind | where | id | body |
//! |---|---|---|---|
//! | `Hello` (0) | first uni stream opened by a server on a new connection | 0 | server's max frame, u32 LE |
//! | `Request` (1) | bidi streams, client to server | request id | encoded request |
//! | `Response` (2) | the request's bidi stream, or its own uni stream when large | request id | encoded response |
//! | `Error` (3) | like `Response` | request id | reject kind u8, UTF-8 reason |
//! | `Message` (4) | the connection's message uni stream | sequence number | encoded message |
//! | `Detached` (5) | the request's bidi stream | request id | empty: the response comes on its own uni stream |
//!
//! The decoder is a pure function of the bytes pushed into it (no I/O), so that it can be
//! tested and fuzzed on its own.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before the body.
pub const HEADER_LEN: usize = 13;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A server's acceptance of a new connection.
    Hello = 0,
    /// A request.
    Request = 1,
    /// A response to the request with the same id.
    Response = 2,
    /// A rejection of the request with the same id.
    Error = 3,
    /// A one-way message.
    Message = 4,
    /// The response to the request with the same id will come on a uni stream of its
    /// own (it is large); the request stream may finish before it arrives.
    Detached = 5,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => FrameKind::Hello,
            1 => FrameKind::Request,
            2 => FrameKind::Response,
            3 => FrameKind::Error,
            4 => FrameKind::Message,
            5 => FrameKind::Detached,
            _ => return None,
        })
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The kind.
    pub kind: FrameKind,
    /// Request id or sequence number.
    pub id: u64,
    /// The body (zero-copy slice of the receive buffer).
    pub body: Bytes,
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The header announces a body longer than the limit.
    TooLarge {
        /// Announced body length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Unknown kind byte.
    UnknownKind(u8),
    /// The stream ended in the middle of a frame.
    Truncated,
}

/// The 13-byte header of a frame with a body of `len` bytes.
pub fn header(kind: FrameKind, id: u64, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4] = kind as u8;
    h[5..].copy_from_slice(&id.to_le_bytes());
    h
}

/// A frame ready to be written: header and body kept apart so that large bodies are
/// never copied.
#[derive(Clone, Debug)]
pub struct OutFrame {
    /// The header.
    pub header: [u8; HEADER_LEN],
    /// The body.
    pub body: Bytes,
}

impl OutFrame {
    /// A frame of `kind` with `id` around `body`. The caller has checked
    /// `body.len() <= u32::MAX` (every limit in this crate is far below).
    pub fn new(kind: FrameKind, id: u64, body: Bytes) -> Self {
        OutFrame { header: header(kind, id, body.len()), body }
    }

    /// Total bytes on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends header and body to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        out.put_slice(&self.header);
        out.put_slice(&self.body);
    }
}

/// The header of the frame being received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The kind.
    pub kind: FrameKind,
    /// Request id or sequence number.
    pub id: u64,
    /// Body length announced.
    pub len: usize,
}

impl Header {
    /// Header plus body: the bytes the whole frame takes.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.len
    }
}

/// Bodies up to this size are copied out of the receive buffer (cheap at this size), so
/// that a small frame held by a handler never keeps a large buffer alive; larger bodies
/// are zero-copy slices of it.
const COPY_MAX: usize = 16 << 10;

/// Incremental decoder over the bytes of one stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
}

impl FrameDecoder {
    /// A decoder rejecting bodies longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder { buf: BytesMut::new(), max }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True if no partial frame is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes buffered (the current partial frame and whatever follows it).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The header of the next frame once its 13 bytes have arrived, checked against the
    /// limit and the known kinds; `Ok(None)` before that.
    pub fn peek_header(&self) -> Result<Option<Header>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { size: len, max: self.max });
        }
        let kind = FrameKind::from_u8(self.buf[4]).ok_or(FrameError::UnknownKind(self.buf[4]))?;
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(&self.buf[5..HEADER_LEN]);
        Ok(Some(Header { kind, id: u64::from_le_bytes(id_bytes), len }))
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an error. After
    /// an error the stream is unusable (framing is lost).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(h) = self.peek_header()? else { return Ok(None) };
        if self.buf.len() < h.frame_len() {
            // No reservation for the announced length: the buffer grows as bytes arrive.
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let body = if h.len <= COPY_MAX {
            let body = Bytes::copy_from_slice(&self.buf[..h.len]);
            self.buf.advance(h.len);
            body
        } else {
            self.buf.split_to(h.len).freeze()
        };
        Ok(Some(Frame { kind: h.kind, id: h.id, body }))
    }

    /// Call at end of stream: an error if a partial frame is left.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() { Ok(()) } else { Err(FrameError::Truncated) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_all(frames: &[(FrameKind, u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for (k, id, body) in frames {
            OutFrame::new(*k, *id, Bytes::from(body.clone())).write_to(&mut out);
        }
        out.to_vec()
    }

    #[test]
    fn round_trip_in_any_split() {
        let frames = vec![
            (FrameKind::Request, 1, vec![1, 2, 3]),
            (FrameKind::Response, u64::MAX, vec![]),
            (FrameKind::Message, 7, vec![9; 1000]),
        ];
        let bytes = encode_all(&frames);
        for step in [1, 2, 5, 13, 14, 100, bytes.len()] {
            let mut d = FrameDecoder::new(4096);
            let mut got = vec![];
            for chunk in bytes.chunks(step) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push((f.kind, f.id, f.body.to_vec()));
                }
            }
            d.finish().unwrap();
            assert_eq!(got, frames, "step {step}");
        }
    }

    #[test]
    fn oversize_rejected_from_the_header_alone() {
        let h = header(FrameKind::Request, 1, 5000);
        let mut d = FrameDecoder::new(4096);
        d.push(&h);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge { size: 5000, max: 4096 }));
    }

    #[test]
    fn a_header_claiming_a_large_body_reserves_nothing() {
        let mut d = FrameDecoder::new(1 << 30);
        d.push(&header(FrameKind::Request, 9, 1 << 30));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.peek_header(), Ok(Some(Header { kind: FrameKind::Request, id: 9, len: 1 << 30 })));
        assert!(d.buf.capacity() < 4096, "reserved {} bytes for a 13-byte header", d.buf.capacity());
        d.push(&[0u8; 1000]);
        assert!(d.buf.capacity() < 8192);
    }

    #[test]
    fn small_bodies_do_not_pin_a_large_buffer() {
        let mut bytes = header(FrameKind::Request, 1, 1 << 20).to_vec();
        bytes.extend(vec![1u8; 1 << 20]);
        bytes.extend_from_slice(&header(FrameKind::Request, 2, 10));
        bytes.extend_from_slice(&[2u8; 10]);
        let mut d = FrameDecoder::new(2 << 20);
        d.push(&bytes);
        let big = d.next_frame().unwrap().unwrap();
        let small = d.next_frame().unwrap().unwrap();
        assert_eq!((big.body.len(), small.body.len(), small.id), (1 << 20, 10, 2));
        assert_eq!(&small.body[..], &[2u8; 10]);
        let big_range = big.body.as_ptr() as usize..big.body.as_ptr() as usize + (2 << 20);
        assert!(!big_range.contains(&(small.body.as_ptr() as usize)), "small body shares the large buffer");
        assert!(d.is_empty());
    }

    #[test]
    fn unknown_kind_and_truncation() {
        let mut h = header(FrameKind::Request, 1, 0);
        h[4] = 99;
        let mut d = FrameDecoder::new(10);
        d.push(&h);
        assert_eq!(d.next_frame(), Err(FrameError::UnknownKind(99)));
        let mut d = FrameDecoder::new(10);
        d.push(&header(FrameKind::Request, 1, 4)[..]);
        d.push(&[1, 2]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let n = rng.random_range(0..64);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            let mut d = FrameDecoder::new(32);
            d.push(&bytes);
            while let Ok(Some(f)) = d.next_frame() {
                assert!(f.body.len() <= 32);
            }
        }
    }
}
