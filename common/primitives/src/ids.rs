//! Identifier newtypes: chains, namespaces, heights, views, nodes, transactions.

use std::fmt;

use crate::hash::Digest;
use crate::sig::PublicKey;

macro_rules! u64_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
            serde::Serialize, serde::Deserialize,
            rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
        )]
        #[serde(transparent)]
        #[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash))]
        pub struct $name(pub u64);

        impl $name {
            /// The next value.
            pub fn next(self) -> Self {
                $name(self.0 + 1)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<&rkyv::Archived<$name>> for $name {
            fn from(a: &rkyv::Archived<$name>) -> Self {
                $name(a.0.to_native())
            }
        }
    };
}

u64_newtype!(
    /// A chain served by the engine. Every chain is also a namespace of the shared log
    /// and of DA squares (see [`Namespace::from`]). Ids at or above
    /// [`ChainId::RESERVED_START`] are reserved for the engine.
    ChainId
);
u64_newtype!(
    /// Position in the ordered log: the height of a finalized block. Settlement counts
    /// time in heights, never in wall-clock time.
    Height
);
u64_newtype!(
    /// A consensus view (round): each view has one designated leader.
    View
);

/// Another name for [`View`], as some protocols call it.
pub type Round = View;

impl ChainId {
    /// First id reserved for engine namespaces (settlement, padding, parity).
    pub const RESERVED_START: u64 = 0xFFFF_FFFF_FFFF_FF00;

    /// True if this id may name a user chain.
    pub fn is_user_chain(self) -> bool {
        self.0 != 0 && self.0 < Self::RESERVED_START
    }
}

/// An 8-byte namespace in the shared log and in DA squares. Squares lay out blobs in
/// namespace byte order; a chain's namespace is its id in big-endian, so numeric and
/// byte order agree.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash))]
pub struct Namespace(pub [u8; 8]);

impl Namespace {
    /// Size of a namespace in bytes.
    pub const LEN: usize = 8;
    /// The smallest namespace.
    pub const MIN: Namespace = Namespace([0; 8]);
    /// Namespace of settlement messages (checkpoint claims, challenges).
    pub const SETTLEMENT: Namespace = Namespace([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    /// Namespace of governance transactions (proposals and votes).
    pub const GOVERNANCE: Namespace = Namespace([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]);
    /// Namespace of padding shares that fill a square after the last blob.
    pub const PADDING: Namespace = Namespace([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]);
    /// Namespace of parity (erasure-coded) shares; the largest namespace.
    pub const PARITY: Namespace = Namespace([0xFF; 8]);

    /// The namespace as a big-endian integer.
    pub fn as_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    /// True for namespaces reserved by the engine (settlement, governance, padding, parity).
    pub fn is_reserved(self) -> bool {
        self.as_u64() >= ChainId::RESERVED_START
    }
}

impl From<ChainId> for Namespace {
    fn from(c: ChainId) -> Self {
        Namespace(c.0.to_be_bytes())
    }
}

impl From<Namespace> for ChainId {
    fn from(n: Namespace) -> Self {
        ChainId(n.as_u64())
    }
}

impl From<&ArchivedNamespace> for Namespace {
    fn from(a: &ArchivedNamespace) -> Self {
        Namespace(a.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ns:{}", hex::encode(self.0))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

crate::hex_serde!(Namespace, 8);

/// A node's identity: its ed25519 public key, pinned in the genesis committee file.
pub type NodeId = PublicKey;

/// A transaction id: the domain-separated hash of what the sender signed.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(transparent)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct TxId(pub Digest);

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx:{:?}", self.0)
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_order_follows_chain_id() {
        let a = Namespace::from(ChainId(2));
        let b = Namespace::from(ChainId(300));
        assert!(a < b);
        assert_eq!(ChainId::from(b), ChainId(300));
        assert!(Namespace::SETTLEMENT < Namespace::PADDING);
        assert!(Namespace::PADDING < Namespace::PARITY);
        assert!(Namespace::SETTLEMENT.is_reserved());
        assert!(Namespace::GOVERNANCE.is_reserved());
        assert!(Namespace::SETTLEMENT < Namespace::GOVERNANCE && Namespace::GOVERNANCE < Namespace::PADDING);
        assert!(!a.is_reserved());
        assert!(ChainId(1).is_user_chain());
        assert!(!ChainId(0).is_user_chain());
    }
}
