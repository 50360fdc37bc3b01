//! The settlement service: follows the ordered log and tracks checkpoint claims per chain.
