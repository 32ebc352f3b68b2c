//! Atlases in the browser (and in Node): building a package from a data set. Opening one is
//! `checkAtlasManifest`, then `Dataset.fromAtlasMatrix` + `Session.loadScnymModel`.
use js_sys::{Function, Object, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::atlas::build::{build_atlas, AtlasOptions};
use crate::atlas::open::{check_manifest, fine_tune_options, AtlasFineTuneOptions};
use crate::web::dataset::JsDataset;
use crate::web::observer::JsObserver;
use crate::web::session::JsSession;
use crate::web::{convert, error::to_js};

#[wasm_bindgen(js_class = Session)]
impl JsSession {
    /// `sclabel atlas build` on a loaded data set: resolves to { manifest, matrix (Uint8Array),
    /// model (Uint8Array), warnings }; the caller stores the files under the manifest's paths.
    #[wasm_bindgen(js_name = buildAtlas)]
    pub fn build_atlas(&self, dataset: &JsDataset, options: JsValue, on_progress: Option<Function>, signal: JsValue) -> Result<Promise, JsValue> {
        let options: AtlasOptions = convert::options(options, "options")?;
        let (data, device) = (dataset.inner.clone(), self.device.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let package = build_atlas(&data, &options, &device, &mut observer).await.map_err(to_js)?;
            let out = Object::new();
            convert::set(&out, "manifest", convert::to_js(&package.manifest)?)?;
            convert::set(&out, "matrix", Uint8Array::from(&package.matrix[..]))?;
            convert::set(&out, "model", Uint8Array::from(&package.model[..]))?;
            convert::set(&out, "warnings", convert::to_js(&package.warnings)?)?;
            Ok(out.into())
        }))
    }
}

/// The training options `fineTuneAtlas` runs with: an atlas's label and domain columns plus the
/// caller's `AtlasFineTuneOptions`, with the core's defaults (the same as `sclabel train --atlas`).
#[wasm_bindgen(js_name = atlasFineTuneOptions)]
pub fn atlas_fine_tune_options(label_key: &str, domain_key: Option<String>, options: JsValue) -> Result<JsValue, JsValue> {
    let options: AtlasFineTuneOptions = convert::options(options, "options")?;
    convert::to_js(&fine_tune_options(label_key, domain_key.as_deref(), &options))
}

/// An atlas.json's text, checked as every door checks it (`atlas::open::check_manifest`: format,
/// versions, the files it must name), as a plain object; `file` names it in messages.
#[wasm_bindgen(js_name = checkAtlasManifest)]
pub fn check_atlas_manifest(text: &str, file: &str) -> Result<JsValue, JsValue> {
    convert::to_js(&check_manifest(text.as_bytes(), file).map_err(to_js)?)
}
