//! wasm-bindgen layer: converts JS values to core types and back. No logic lives here.
mod convert;
mod dataset;
mod error;
mod observer;
mod session;

use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The crate version, to check a package against bundles it loads.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
