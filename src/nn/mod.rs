//! Neural network modules: burn's (`mlp`) and the host executor's (`gemm` → `host_linear` →
//! `host_mlp`; `host_ops`: its elementwise maths and losses; `simd` and `sparse_act` kernels).
pub mod gemm;
pub mod host_linear;
pub mod host_mlp;
pub mod host_ops;
pub mod mlp;
pub mod simd;
pub mod sparse_act;
