//! CellTypist models in the browser: read a `.pkl` (or its sclabel bundle) and annotate with it.
//! Conversion only; the work is in `crate::celltypist`.
use std::rc::Rc;

use js_sys::{Float32Array, Function, Object, Promise, Uint32Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::celltypist::{annotate, annotate_h5ad_rows, CelltypistModel, CelltypistOptions, CelltypistPrediction};
use crate::io::h5ad::open_h5ad_rows;
use crate::scnym::api::PredictReport;
use crate::web::dataset::{JsDataset, JsSource};
use crate::web::observer::JsObserver;
use crate::web::session::JsSession;
use crate::web::{convert, error::to_js};

/// A CellTypist model (host memory: its scores are a sparse product, no device needed).
#[wasm_bindgen(js_name = CelltypistModel)]
pub struct JsCelltypistModel {
    inner: Rc<CelltypistModel>,
}

#[wasm_bindgen(js_class = CelltypistModel)]
impl JsCelltypistModel {
    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> Vec<String> {
        self.inner.classes.clone()
    }

    /// The model's genes (CellTypist's `features`).
    #[wasm_bindgen(getter)]
    pub fn genes(&self) -> Vec<String> {
        self.inner.features.clone()
    }

    /// `{ classifier, with_mean, description }` (description: the file's date, details, url, …).
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let m = &self.inner;
        let description: serde_json::Map<String, serde_json::Value> = m.description.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        convert::to_js(&serde_json::json!({ "classifier": m.classifier, "with_mean": m.with_mean, "description": description }))
    }

    /// The model as an sclabel bundle (safetensors: no pickle, no code).
    #[wasm_bindgen(js_name = toBytes)]
    pub fn to_bytes(&self) -> Result<Uint8Array, JsValue> {
        Ok(Uint8Array::from(&self.inner.to_bundle_bytes().map_err(to_js)?[..]))
    }
}

#[wasm_bindgen(js_class = Session)]
impl JsSession {
    /// Reads a CellTypist model: its `.pkl` or an sclabel CellTypist bundle (`file` names it in
    /// errors).
    #[wasm_bindgen(js_name = loadCelltypist)]
    pub fn load_celltypist(&self, bytes: &[u8], file: &str) -> Result<JsCelltypistModel, JsValue> {
        Ok(JsCelltypistModel { inner: Rc::new(CelltypistModel::from_bytes(bytes, file).map_err(to_js)?) })
    }

    /// CellTypist's annotate of `dataset`: { classes, predicted_labels, prob_match, conf_score
    /// (Float32Array), probability_matrix and decision_matrix (Float32Array, cells × classes),
    /// majority_voting and over_clustering (with majority voting, else null), clustering, and
    /// sclabel's names: labels (the vote, else the best match), predicted (Uint32Array), confidence,
    /// probabilities; genesUsed, report, options }.
    #[wasm_bindgen(js_name = predictCelltypist)]
    pub fn predict_celltypist(
        &self,
        model: &JsCelltypistModel,
        dataset: &JsDataset,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let o: CelltypistOptions = convert::options(options, "options")?;
        let (model, data) = (model.inner.clone(), dataset.inner.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let (p, report) = annotate(&model, &data, &o, &mut observer).await.map_err(to_js)?;
            prediction_to_js(&p, &report, &o, None)
        }))
    }

    /// As `predictCelltypist`, over an `.h5ad` read a block of cells at a time through
    /// `readAt(offset, length) -> Uint8Array` (never loaded: only the model's genes are kept).
    /// Majority voting takes an obs column's clusters here. The result also carries `obsNames`.
    #[wasm_bindgen(js_name = predictCelltypistH5ad)]
    #[allow(clippy::too_many_arguments)]
    pub fn predict_celltypist_h5ad(
        &self,
        model: &JsCelltypistModel,
        length: f64,
        read_at: Function,
        name: &str,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let o: CelltypistOptions = convert::options(options, "options")?;
        let rows = open_h5ad_rows(JsSource::new(length, read_at), name, o.use_raw).map_err(to_js)?;
        let model = model.inner.clone();
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let (p, report) = annotate_h5ad_rows(&model, &rows, &o, &mut observer).await.map_err(to_js)?;
            prediction_to_js(&p, &report, &o, Some(&rows.obs_names))
        }))
    }
}

/// A prediction as the JS result: CellTypist's names, sclabel's, typed arrays for the numbers.
fn prediction_to_js(p: &CelltypistPrediction, report: &PredictReport, o: &CelltypistOptions, obs_names: Option<&[String]>) -> Result<JsValue, JsValue> {
    let f32s = |v: &[f64]| Float32Array::from(&v.iter().map(|&x| x as f32).collect::<Vec<_>>()[..]);
    let out = Object::new();
    let (conf, probs) = (f32s(&p.conf_score), f32s(&p.probability));
    convert::set(&out, "classes", convert::to_js(&p.classes)?)?;
    convert::set(&out, "predicted_labels", convert::names_to_js(&p.predicted_labels))?;
    convert::set(&out, "prob_match", convert::names_to_js(&p.prob_match))?;
    convert::set(&out, "conf_score", conf.clone())?;
    convert::set(&out, "probability_matrix", probs.clone())?;
    convert::set(&out, "decision_matrix", f32s(&p.decision))?;
    convert::set(&out, "majority_voting", p.majority_voting.as_deref().map(convert::names_to_js).unwrap_or(JsValue::NULL))?;
    convert::set(&out, "over_clustering", p.over_clustering.as_deref().map(|c| JsValue::from(Uint32Array::from(c))).unwrap_or(JsValue::NULL))?;
    convert::set(&out, "clustering", convert::to_js(&p.clustering)?)?;
    convert::set(&out, "labels", convert::names_to_js(p.majority_voting.as_ref().unwrap_or(&p.predicted_labels)))?;
    convert::set(&out, "predicted", Uint32Array::from(&p.best[..]))?;
    convert::set(&out, "confidence", conf)?;
    convert::set(&out, "probabilities", probs)?;
    convert::set(&out, "genesUsed", p.genes_used as u32)?;
    convert::set(&out, "report", convert::to_js(&report)?)?;
    convert::set(&out, "options", convert::to_js(&o)?)?;
    if let Some(names) = obs_names {
        convert::set(&out, "obsNames", convert::to_js(&names)?)?;
    }
    Ok(out.into())
}
