//! The learned schema that turns records into feature vectors.
