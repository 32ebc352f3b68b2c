//! Progress to a JS callback, cancellation from an AbortSignal, and yielding to the event loop so
//! the page (or worker) stays responsive during training.
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::{Result, SclabelError};
use crate::train::progress::{Observer, Progress};

/// Yield and report at most this often (ms), except epoch-end events and the event that completes a
/// phase's cells (its last), which are always reported.
const INTERVAL_MS: f64 = 50.0;

pub struct JsObserver {
    on_progress: Option<Function>,
    signal: Option<JsValue>,
    last: f64,
}

impl JsObserver {
    /// `signal`: the call's AbortSignal argument as JS passed it (undefined / null: none).
    pub fn new(on_progress: Option<Function>, signal: JsValue) -> Self {
        let signal = (!signal.is_undefined() && !signal.is_null()).then_some(signal);
        Self { on_progress, signal, last: 0.0 }
    }

    fn aborted(&self) -> bool {
        self.signal.as_ref().is_some_and(|s| Reflect::get(s, &"aborted".into()).map(|v| v.is_truthy()).unwrap_or(false))
    }
}

fn now() -> f64 {
    js_sys::Date::now()
}

/// A macrotask yield, so rendering, input and messages get their turn: a message to ourselves
/// through a MessageChannel. Not `setTimeout(0)`: a timer set from a timer's task past the fifth
/// level of nesting waits at least 4 ms (HTML's clamp), and every yield after the first few is
/// such a timer. Measured in Chromium on the demo pair (bench/results/cpu_module_yield_browser.json):
/// the audit, which yields at every short epoch, 0.76× the time; scNym training 0.93×.
async fn yield_now() {
    fn get(target: &JsValue, key: &str) -> std::result::Result<JsValue, JsValue> {
        Reflect::get(target, &key.into())
    }
    fn call(target: &JsValue, method: &str, arg: Option<&JsValue>) -> std::result::Result<JsValue, JsValue> {
        let f = get(target, method)?.dyn_into::<Function>()?;
        match arg {
            Some(a) => f.call1(target, a),
            None => f.call0(target),
        }
    }
    let promise = Promise::new(&mut |resolve, _| {
        let channel =
            get(&js_sys::global(), "MessageChannel").and_then(|c| c.dyn_into::<Function>()).and_then(|c| Reflect::construct(&c, &js_sys::Array::new()));
        let posted = channel.and_then(|ch| {
            let (port1, port2) = (get(&ch, "port1")?, get(&ch, "port2")?);
            let resolve = resolve.clone();
            let receiver = port1.clone();
            // Closed once used: an open port with a listener keeps Node's event loop alive.
            let on_message = Closure::once_into_js(move |_: JsValue| {
                let _ = call(&receiver, "close", None);
                let _ = resolve.call0(&JsValue::UNDEFINED);
            });
            Reflect::set(&port1, &"onmessage".into(), &on_message)?;
            call(&port2, "postMessage", Some(&JsValue::UNDEFINED))
        });
        if posted.is_err() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    let _ = JsFuture::from(promise).await;
}

impl Observer for JsObserver {
    async fn on_progress(&mut self, progress: &Progress) -> Result<()> {
        let t = now();
        let last_cells = progress.cells_total > 0 && progress.cells_done == progress.cells_total;
        if progress.loss.is_none() && !last_cells && t - self.last < INTERVAL_MS {
            return Ok(());
        }
        self.last = t;
        if let Some(f) = &self.on_progress {
            if let Ok(v) = crate::web::convert::to_js(progress) {
                // A throwing callback must not kill the run; it's the host's bug, reported in the console.
                if let Err(e) = f.call1(&JsValue::NULL, &v) {
                    console_error(&e);
                }
            }
        }
        yield_now().await;
        if self.aborted() {
            return Err(SclabelError::Cancelled);
        }
        Ok(())
    }
}

fn console_error(e: &JsValue) {
    let console = Reflect::get(&js_sys::global(), &"console".into()).ok();
    if let Some(error) = console.and_then(|c| Reflect::get(&c, &"error".into()).ok()).and_then(|f| f.dyn_into::<Function>().ok()) {
        let _ = error.call2(&JsValue::NULL, &"sclabel: onProgress threw".into(), e);
    }
}
