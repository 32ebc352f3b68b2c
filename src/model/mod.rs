//! Neural network modules.
pub mod mlp;
pub mod host_linear;
pub mod host_mlp;
pub mod simd;
pub mod sparse_act;
