//! Synthetic traffic with labelled incidents, for tests and examples.
