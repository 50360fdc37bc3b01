//! The `lamina` binary.
fn main() {}
