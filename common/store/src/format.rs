//! On-disk format of a segment: a static header, two watermark slots, then records.
//!
//! ```text
//! offset 0      segment header (88 bytes used of page 0; written once, at creation)
//! offset 4096   watermark slot A (64 bytes used of page 1)
//! offset 8192   watermark slot B (64 bytes used of page 2)
//! offset 12288  records, back to back, no padding
//! ```
//!
//! Each part lives on its own 4 KiB page so that a torn write of one (a slot being
//! rewritten during power loss) can never damage another.
//!
//! A record is a 40-byte header followed by the payload:
//!
//! ```text
//! 0   u32  payload length
//! 4   u32  magic 0x4C52_4543 ("LREC" read little-endian as bytes "CERL")
//! 8   u64  sequence number
//! 16  u64  durable claim: when this record was written, every record with a smaller
//!          sequence number than this value had been made durable by an fdatasync
//! 24  [16] checksum: blake3 keyed with the domain "lamina store record v1" over
//!          log id ‖ previous record's checksum ‖ header bytes 0..24 ‖ payload,
//!          truncated to 128 bits
//! ```
//!
//! Chaining the previous checksum (TigerBeetle's hash chain) makes a record written at
//! the wrong place, a stale record from an older history and a record of another log
//! (different log id) all fail validation. All integers are little-endian.

use lamina_primitives::Domain;

/// Checksum of records (chained).
pub(crate) static RECORD_DOMAIN: Domain = Domain::new("lamina store record v1");
/// Checksum of segment headers.
pub(crate) static HEADER_DOMAIN: Domain = Domain::new("lamina store segment header v1");
/// Checksum of watermark slots.
pub(crate) static SLOT_DOMAIN: Domain = Domain::new("lamina store watermark v1");

/// Page size the layout is aligned to.
pub const PAGE: u64 = 4096;
/// Offset of the first record in every segment.
pub const DATA_START: u64 = 3 * PAGE;
/// Offsets of the two watermark slots.
pub const SLOT_OFFSETS: [u64; 2] = [PAGE, 2 * PAGE];
/// Size of a record header.
pub const RECORD_HEADER: usize = 40;
/// Size of the segment header (used part of page 0).
pub const SEGMENT_HEADER: usize = 88;
/// Size of a watermark slot.
pub const SLOT_SIZE: usize = 64;

const SEGMENT_MAGIC: [u8; 8] = *b"LAMSTOR1";
const FORMAT_VERSION: u32 = 1;
const RECORD_MAGIC: u32 = 0x4C52_4543;
const SLOT_MAGIC: u32 = 0x574D_524B;
const SLOT_SEALED: u32 = 1;

/// A 128-bit truncated blake3 checksum.
pub type Checksum = [u8; 16];

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn sum_at(b: &[u8], at: usize) -> Checksum {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    a
}

fn truncate(d: blake3::Hash) -> Checksum {
    let mut a = [0u8; 16];
    a.copy_from_slice(&d.as_bytes()[..16]);
    a
}

/// The static header at the start of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub log_id: [u8; 16],
    pub segment_id: u64,
    pub base_seq: u64,
    pub prev_checksum: Checksum,
    pub segment_len: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER] {
        let mut b = [0u8; SEGMENT_HEADER];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 12..16: flags, zero.
        b[16..32].copy_from_slice(&self.log_id);
        b[32..40].copy_from_slice(&self.segment_id.to_le_bytes());
        b[40..48].copy_from_slice(&self.base_seq.to_le_bytes());
        b[48..64].copy_from_slice(&self.prev_checksum);
        b[64..72].copy_from_slice(&self.segment_len.to_le_bytes());
        let sum = truncate(blake3::keyed_hash(HEADER_DOMAIN.key(), &b[..72]));
        b[72..88].copy_from_slice(&sum);
        b
    }

    /// Parses and checks a header; `Err` carries the reason.
    pub fn decode(b: &[u8]) -> Result<Self, &'static str> {
        if b.len() < SEGMENT_HEADER {
            return Err("file shorter than a segment header");
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic");
        }
        let sum = truncate(blake3::keyed_hash(HEADER_DOMAIN.key(), &b[..72]));
        if sum != sum_at(b, 72) {
            return Err("segment header checksum mismatch");
        }
        if u32_at(b, 8) != FORMAT_VERSION {
            return Err("unsupported segment format version");
        }
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&b[16..32]);
        Ok(SegmentHeader {
            log_id,
            segment_id: u64_at(b, 32),
            base_seq: u64_at(b, 40),
            prev_checksum: sum_at(b, 48),
            segment_len: u64_at(b, 64),
        })
    }
}

/// A watermark slot: a lower bound on what is durable, written after each successful
/// sync (never fsynced on its own: the next sync persists it, so after power loss it may
/// lag by one sync; after a process crash it is exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub generation: u64,
    /// Every record with a sequence number below this is durable.
    pub durable_count: u64,
    /// Byte offset in this segment up to which records are durable.
    pub end_offset: u64,
    /// The segment is full and closed; `end_offset` is its final end.
    pub sealed: bool,
    /// Checksum of the last durable record in this segment (or the segment's
    /// `prev_checksum` when it holds none).
    pub last_checksum: Checksum,
}

impl Slot {
    pub fn encode(&self, log_id: &[u8; 16]) -> [u8; SLOT_SIZE] {
        let mut b = [0u8; SLOT_SIZE];
        b[0..4].copy_from_slice(&SLOT_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&(if self.sealed { SLOT_SEALED } else { 0 }).to_le_bytes());
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.durable_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.end_offset.to_le_bytes());
        b[32..48].copy_from_slice(&self.last_checksum);
        let sum = slot_sum(log_id, &b[..48]);
        b[48..64].copy_from_slice(&sum);
        b
    }

    /// `None` for an empty, torn or foreign slot (any of which is simply ignored).
    pub fn decode(b: &[u8], log_id: &[u8; 16]) -> Option<Self> {
        if b.len() < SLOT_SIZE || u32_at(b, 0) != SLOT_MAGIC || slot_sum(log_id, &b[..48]) != sum_at(b, 48) {
            return None;
        }
        Some(Slot {
            sealed: u32_at(b, 4) & SLOT_SEALED != 0,
            generation: u64_at(b, 8),
            durable_count: u64_at(b, 16),
            end_offset: u64_at(b, 24),
            last_checksum: sum_at(b, 32),
        })
    }
}

fn slot_sum(log_id: &[u8; 16], body: &[u8]) -> Checksum {
    let mut h = SLOT_DOMAIN.hasher();
    h.update(log_id);
    h.update(body);
    truncate(h.finalize())
}

/// A parsed record header (not yet checked against its payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub len: u32,
    pub seq: u64,
    pub claim: u64,
    pub checksum: Checksum,
}

impl RecordHeader {
    /// Parses the fixed fields; `None` if the magic is wrong (zeros, garbage).
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < RECORD_HEADER || u32_at(b, 4) != RECORD_MAGIC {
            return None;
        }
        Some(RecordHeader { len: u32_at(b, 0), seq: u64_at(b, 8), claim: u64_at(b, 16), checksum: sum_at(b, 24) })
    }

    fn prefix(len: u32, seq: u64, claim: u64) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&len.to_le_bytes());
        b[4..8].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        b[8..16].copy_from_slice(&seq.to_le_bytes());
        b[16..24].copy_from_slice(&claim.to_le_bytes());
        b
    }

    /// Whether `payload` (of this header's length) matches the checksum, given the
    /// previous record's checksum.
    pub fn verify(&self, log_id: &[u8; 16], prev: &Checksum, payload: &[u8]) -> bool {
        payload.len() == self.len as usize
            && record_checksum(log_id, prev, &Self::prefix(self.len, self.seq, self.claim), payload) == self.checksum
    }
}

fn record_checksum(log_id: &[u8; 16], prev: &Checksum, prefix: &[u8; 24], payload: &[u8]) -> Checksum {
    let mut h = RECORD_DOMAIN.hasher();
    h.update(log_id);
    h.update(prev);
    h.update(prefix);
    h.update(payload);
    truncate(h.finalize())
}

/// Appends the framed record to `out` and returns its checksum.
pub(crate) fn frame_record(
    out: &mut Vec<u8>,
    log_id: &[u8; 16],
    prev: &Checksum,
    seq: u64,
    claim: u64,
    payload: &[u8],
) -> Checksum {
    let len = payload.len() as u32;
    let prefix = RecordHeader::prefix(len, seq, claim);
    let sum = record_checksum(log_id, prev, &prefix, payload);
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&sum);
    out.extend_from_slice(payload);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checksum() {
        let h = SegmentHeader {
            log_id: [7; 16],
            segment_id: 3,
            base_seq: 99,
            prev_checksum: [9; 16],
            segment_len: 1 << 20,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[40] ^= 1;
        assert!(SegmentHeader::decode(&b).is_err());
    }

    #[test]
    fn slot_is_bound_to_its_log() {
        let s = Slot { generation: 5, durable_count: 10, end_offset: 20_000, sealed: true, last_checksum: [1; 16] };
        let b = s.encode(&[2; 16]);
        assert_eq!(Slot::decode(&b, &[2; 16]), Some(s));
        assert_eq!(Slot::decode(&b, &[3; 16]), None);
    }

    #[test]
    fn record_checksum_covers_chain_and_payload() {
        let mut out = Vec::new();
        let sum = frame_record(&mut out, &[1; 16], &[0; 16], 4, 2, b"hello");
        let h = RecordHeader::parse(&out).unwrap();
        assert_eq!((h.len, h.seq, h.claim, h.checksum), (5, 4, 2, sum));
        assert!(h.verify(&[1; 16], &[0; 16], b"hello"));
        assert!(!h.verify(&[1; 16], &[1; 16], b"hello"), "chain");
        assert!(!h.verify(&[2; 16], &[0; 16], b"hello"), "log id");
        assert!(!h.verify(&[1; 16], &[0; 16], b"hellp"), "payload");
    }
}
