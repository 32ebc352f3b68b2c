//! Neural network modules.
pub mod mlp;
