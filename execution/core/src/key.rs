//! State keys: two typed key spaces (counters and data) over one 48-byte layout.
//!
//! A key is 48 bytes: a tag byte and 47 bytes chosen by the state machine. The tag's top
//! bit says which key space the key lives in: set for [`CounterKey`]s (a `u128` that
//! may be credited commutatively), clear for [`DataKey`]s (opaque bytes). The two
//! spaces never collide, in the flat state or in the Merkle tree, because the tag is part
//! of the hashed key.
//!
//! Keys are compared word-wise and hashed for in-memory maps with foldhash under a
//! random per-map seed ([`KeyBuildHasher`]). Keys contain attacker-chosen bytes (any
//! 32 bytes can be named as a transfer's recipient), so an unseeded hash would let
//! colliding keys be prepared offline and flood the maps; with the seed they cannot.

use std::fmt;
use std::hash::{Hash, Hasher};

use lamina_primitives::{Digest, Domain};

/// Length of every state key.
pub const KEY_LEN: usize = 48;

const COUNTER_BIT: u8 = 0x80;

/// Domain of the Merkle path of a key: `H(key bytes)`.
pub static STATE_KEY: Domain = Domain::new("lamina execution state key v1");

/// The raw 48 bytes of a key. Ordered bytewise (lexicographically).
#[derive(Clone, Copy, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord))]
pub struct RawKey(pub [u8; KEY_LEN]);

impl RawKey {
    /// The key as six big-endian words: comparing them compares the bytes
    /// lexicographically, without a `memcmp` call (keys are compared on hot paths).
    #[inline]
    fn words(&self) -> [u64; 6] {
        let mut w = [0u64; 6];
        for (i, c) in self.0.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            w[i] = u64::from_be_bytes(b);
        }
        w
    }

    /// The Merkle path of this key (`lamina execution state key v1` hash of its bytes).
    pub fn path(&self) -> Digest {
        STATE_KEY.hash(&self.0)
    }

    /// True if this key lives in the counter space.
    pub fn is_counter(&self) -> bool {
        self.0[0] & COUNTER_BIT != 0
    }
}

impl PartialEq for RawKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.words(), other.words());
        // Branch-free and call-free: array `==` would become a `bcmp` call.
        ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5])) == 0
    }
}

impl Eq for RawKey {}

impl PartialOrd for RawKey {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RawKey {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.words(), other.words());
        for i in 0..6 {
            if a[i] != b[i] {
                return a[i].cmp(&b[i]);
            }
        }
        std::cmp::Ordering::Equal
    }
}

impl Hash for RawKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl fmt::Debug for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{}", self.0[0], hex::encode(&self.0[1..13]))
    }
}

macro_rules! typed_key {
    ($(#[$m:meta])* $name:ident, $counter:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
        #[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord))]
        pub struct $name(RawKey);

        impl $name {
            /// A key from a tag (its top bit is overwritten to select the key space) and
            /// up to 47 bytes of body (shorter bodies are zero-padded; longer ones are
            /// truncated, so state machines should hash long identifiers first).
            pub fn new(tag: u8, body: &[&[u8]]) -> Self {
                let mut k = [0u8; KEY_LEN];
                k[0] = if $counter { tag | COUNTER_BIT } else { tag & !COUNTER_BIT };
                let mut at = 1;
                for part in body {
                    let n = part.len().min(KEY_LEN - at);
                    k[at..at + n].copy_from_slice(&part[..n]);
                    at += n;
                }
                $name(RawKey(k))
            }

            /// Reinterprets raw bytes as a key of this space, if the tag bit agrees.
            pub fn from_raw(raw: RawKey) -> Option<Self> {
                (raw.is_counter() == $counter).then_some($name(raw))
            }

            /// The raw bytes.
            pub fn raw(&self) -> &RawKey {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

typed_key!(
    /// A key whose value is a `u128` counter (balances, nonces, supplies). Absent reads as
    /// zero and zero is stored as absent. Counters may be credited commutatively.
    CounterKey,
    true
);
typed_key!(
    /// A key whose value is opaque bytes (asset metadata, bridge messages).
    DataKey,
    false
);

/// The hasher of state-key maps: foldhash, seeded randomly per map.
pub type KeyBuildHasher = foldhash::fast::RandomState;

/// A hash map keyed by state keys with the cheap hasher.
pub type KeyMap<K, V> = std::collections::HashMap<K, V, KeyBuildHasher>;

/// An empty [`KeyMap`] with room for `n` entries.
pub fn key_map<K, V>(n: usize) -> KeyMap<K, V> {
    KeyMap::with_capacity_and_hasher(n, KeyBuildHasher::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_order_is_byte_order() {
        let mut keys: Vec<RawKey> = (0..200u32)
            .map(|i| {
                let mut k = [0u8; KEY_LEN];
                let h = blake3::hash(&i.to_le_bytes());
                k[(i as usize) % KEY_LEN] = h.as_bytes()[0];
                k[(i as usize * 7) % KEY_LEN] = h.as_bytes()[1];
                RawKey(k)
            })
            .collect();
        let mut by_bytes = keys.clone();
        by_bytes.sort_by_key(|k| k.0);
        keys.sort();
        assert!(keys.iter().zip(&by_bytes).all(|(a, b)| a.0 == b.0));
        for w in keys.windows(2) {
            assert_eq!(w[0] == w[1], w[0].0 == w[1].0);
        }
    }

    #[test]
    fn key_spaces_are_disjoint() {
        let c = CounterKey::new(1, &[b"abc"]);
        let d = DataKey::new(1, &[b"abc"]);
        assert_ne!(c.raw(), d.raw());
        assert_ne!(c.raw().path(), d.raw().path());
        assert!(c.raw().is_counter());
        assert!(!d.raw().is_counter());
        assert!(DataKey::from_raw(*c.raw()).is_none());
        assert_eq!(CounterKey::from_raw(*c.raw()), Some(c));
        // Tag top bit cannot be used to cross spaces.
        assert!(!DataKey::new(0x81, &[]).raw().is_counter());
    }
}
