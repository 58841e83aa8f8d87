//! Drift detection on feature and score distributions.
