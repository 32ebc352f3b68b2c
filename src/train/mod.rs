//! Hand-written training loops (burn-train has no wasm support), progress and cancellation.
pub mod adadelta;
pub mod classifier;
pub mod holdout;
pub mod progress;
