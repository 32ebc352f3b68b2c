//! `Session`: a started compute device (WebGPU or CPU) that runs the core's tasks.
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::backend::{select, BackendRequest, ComputeDevice};
use crate::train::holdout::{train_holdout, HoldoutOptions};
use crate::web::dataset::JsDataset;
use crate::web::observer::JsObserver;
use crate::web::{convert, error::to_js};

/// wgpu panics where WebGPU is missing, so check first: it needs `navigator.gpu`, which browsers
/// give to windows and dedicated workers in secure contexts.
fn webgpu_support() -> Result<(), String> {
    let global = js_sys::global();
    let navigator = js_sys::Reflect::get(&global, &"navigator".into()).unwrap_or(JsValue::UNDEFINED);
    let gpu = if navigator.is_undefined() { JsValue::UNDEFINED } else { js_sys::Reflect::get(&navigator, &"gpu".into()).unwrap_or(JsValue::UNDEFINED) };
    if gpu.is_undefined() || gpu.is_null() {
        return Err("WebGPU is not available here (navigator.gpu is undefined: not a browser, not a secure context, or WebGPU is disabled)".into());
    }
    let scope = js_sys::Reflect::get(&global, &"constructor".into())
        .and_then(|c| js_sys::Reflect::get(&c, &"name".into()))
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    if scope != "Window" && scope != "DedicatedWorkerGlobalScope" {
        return Err(format!("WebGPU is only usable from a window or a dedicated worker, not from {scope}"));
    }
    Ok(())
}

#[wasm_bindgen(js_name = Session)]
pub struct JsSession {
    pub(crate) device: ComputeDevice,
}

#[wasm_bindgen(js_class = Session)]
impl JsSession {
    /// Starts a backend: "auto" (WebGPU, else CPU, with the reason), "webgpu" or "cpu".
    pub async fn start(backend: JsValue) -> Result<JsSession, JsValue> {
        let request: BackendRequest = convert::options(backend, "backend")?;
        let device = select(request, webgpu_support()).await.map_err(to_js)?;
        Ok(JsSession { device })
    }

    /// Which backend runs, the adapter, and why.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> Result<JsValue, JsValue> {
        convert::to_js(&self.device.info)
    }

    /// Returns pooled GPU buffers to the browser (after a run ends or is cancelled).
    #[wasm_bindgen(js_name = releaseMemory)]
    pub fn release_memory(&self) {
        self.device.release_memory();
    }

    /// Trains the plain MLP on part of `dataset`'s labelled cells and tests on the rest.
    /// Resolves to the report (accuracy, loss per epoch, backend); rejects with an Error whose
    /// `.code` names the problem.
    #[wasm_bindgen(js_name = trainHoldout)]
    pub fn train_holdout(&self, dataset: &JsDataset, options: JsValue, on_progress: Option<Function>, signal: JsValue) -> Result<Promise, JsValue> {
        let options: HoldoutOptions = convert::options(options, "options")?;
        let (data, device) = (dataset.inner.clone(), self.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let report = train_holdout(&data, &options, &device, &mut observer).await.map_err(to_js)?;
            convert::to_js(&report)
        }))
    }
}

#[wasm_bindgen(js_class = Session)]
impl JsSession {
    /// Traps inside an async task, as a lost GPU device or a failed allocation does: the engine's
    /// crash path (a `crashed` error naming the operation, never an uncaught RuntimeError) is
    /// tested with it. Not part of the package's API.
    #[wasm_bindgen(js_name = trapForTest)]
    pub fn trap_for_test(&self) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async {
            // One turn of the event loop first, so the trap happens in a later task, not this call.
            let _ = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&JsValue::NULL)).await;
            std::process::abort();
        })
    }
}

/// Caps the memory sclabel's data may take (bytes; at most 4 GiB minus headroom, the default):
/// past it, work is refused with `too_large` instead of running the page out of memory.
#[wasm_bindgen(js_name = setMemoryLimit)]
pub fn set_memory_limit(bytes: Option<f64>) {
    crate::memory::set_limit(bytes.filter(|b| *b > 0.0).map(|b| b as u64));
}

/// Checks that `bytes` more fit the memory budget before the JS layer hands wasm a big buffer
/// (e.g. a whole file to annotate): a `too_large` error saying `what` and `advice` otherwise.
#[wasm_bindgen(js_name = reserveMemory)]
pub fn reserve_memory(what: &str, bytes: f64, advice: &str) -> Result<(), JsValue> {
    crate::memory::reserve(what, bytes as u64, advice).map_err(crate::web::error::to_js)
}
