//! Dataset statistics per field, and the comparison of a new batch with history.
