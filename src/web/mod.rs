//! wasm-bindgen layer: converts JS values to core types and back. No logic lives here.
mod atlas;
mod audit;
mod builder;
mod celltypist;
mod convert;
mod dataset;
mod error;
mod export;
mod observer;
mod scnym;
mod session;

use wasm_bindgen::prelude::*;

extern "C" {
    /// Runs the module's static constructors (`inventory` registrations in burn's GPU stack).
    fn __wasm_call_ctors();
}

#[wasm_bindgen(start)]
fn start() {
    // wasm-ld wraps *every* export with a call to the constructors unless the module calls them
    // itself. Those wrappers re-ran burn's `inventory` registrations on each JS → wasm call
    // (~0.2–1 ms each: 35k gene names took 7.8 s to return). Calling them once here removes the
    // wrappers.
    // SAFETY: wasm-ld always defines this symbol; it is called exactly once, at instantiation,
    // before any other export runs.
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
}

/// The crate version, to check a package against bundles it loads.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
