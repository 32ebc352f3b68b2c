//! Neural network modules.
pub mod host_linear;
pub mod host_mlp;
pub mod mlp;
pub mod simd;
pub mod sparse_act;
