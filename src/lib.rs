//! sclabel: single-cell label transfer (scNym), annotation audits (Annotatability) and gene
//! explanations, on WebGPU or CPU through burn.
//!
//! The core (everything but `web`) is backend-agnostic, has no JS types and no file I/O: it takes
//! bytes and returns plain Rust values. `web` is the thin wasm-bindgen layer over it.
pub mod atlas;
pub mod audit;
pub mod backend;
pub mod celltypist;
pub mod cluster;
pub mod data;
pub mod error;
pub mod io;
pub mod memory;
pub mod nn;
pub mod scnym;
pub mod train;

#[cfg(all(feature = "web", target_family = "wasm"))]
pub mod web;

pub use error::{Result, SclabelError};

#[cfg(all(test, not(target_family = "wasm")))]
mod typescript;

/// Runs one of the core's async functions to completion (native callers: CLI, tests, benches).
#[cfg(not(target_family = "wasm"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}
