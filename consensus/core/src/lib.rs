//! Lamina's BFT shared-sequencer protocol as a pure state machine.
