//! Neural network modules.
pub mod mlp;
pub mod host_linear;
pub mod host_mlp;
