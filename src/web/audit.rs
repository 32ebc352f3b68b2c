//! Annotation audits and expected-gradient explanations in the browser. Conversion only; the work
//! is in `crate::audit` and `crate::scnym::explain`. Per-cell results cross as typed arrays under
//! Annotatability's / scNym's names (`conf`, `var`, `conf_score_high`, `saliency` …).
use js_sys::{Float32Array, Function, Object, Promise, Uint32Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::audit::api::{audit_adata, audit_h5ad_rows, AuditOptions, AuditReport};
use crate::error::SclabelError;
use crate::io::h5ad::open_h5ad_rows;
use crate::scnym::explain::{explain_adata, explain_h5ad_rows, explain_labelled, ExplainOptions, Explanation};
use crate::web::dataset::{JsDataset, JsSource};
use crate::web::observer::JsObserver;
use crate::web::scnym::JsScnymModel;
use crate::web::session::JsSession;
use crate::web::{convert, error::to_js};

#[wasm_bindgen(js_class = Session)]
impl JsSession {
    /// Audits `dataset`'s annotations. Resolves to { cells (Uint32Array, audited rows), labels,
    /// conf, var (Float32Array), trusted (Uint8Array), category (strings), corrected_label,
    /// conf_second / var_second, cutoffs, noise_run { flipped, auroc }, gene_scores { genes,
    /// conf_score_high, conf_score_low, conf_score_mid }, class_names, history, backend, normalization,
    /// genes (the genes trained on), gene_selection (how they were chosen) }.
    #[wasm_bindgen(js_name = audit)]
    pub fn audit(&self, dataset: &JsDataset, options: JsValue, on_progress: Option<Function>, signal: JsValue) -> Result<Promise, JsValue> {
        let options: AuditOptions = convert::options(options, "options")?;
        let (data, device) = (dataset.inner.clone(), self.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            audit_to_js(&audit_adata(&data, &options, &device, &mut observer).await.map_err(to_js)?)
        }))
    }

    /// [`audit`] on an `.h5ad` read through `readAt(offset, length) -> Uint8Array` a block of cells
    /// at a time: only the audited (highly variable) genes are kept.
    #[wasm_bindgen(js_name = auditH5ad)]
    pub fn audit_h5ad(
        &self,
        length: f64,
        read_at: Function,
        name: &str,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let options: AuditOptions = convert::options(options, "options")?;
        let rows = open_h5ad_rows(JsSource::new(length, read_at), name, options.use_raw).map_err(to_js)?;
        let device = self.device.clone();
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            audit_to_js(&audit_h5ad_rows(&rows, &options, &device, &mut observer).await.map_err(to_js)?)
        }))
    }

    /// Expected-gradient attributions of `model`'s logit for `options.target`, for the cells with
    /// that label in `label_key`: an obs column's name, or one label per cell (e.g. a prediction's
    /// `scNym`). Resolves to { genes, cells (Uint32Array), attributions (Float32Array, cells ×
    /// genes), saliency (Float32Array per gene), ranking (Uint32Array, genes by saliency, highest
    /// first), target, n_samples, abs_scale, warnings }.
    #[wasm_bindgen(js_name = explainScnym)]
    pub fn explain_scnym(
        &self,
        model: &JsScnymModel,
        dataset: &JsDataset,
        label_key: JsValue,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let options: ExplainOptions = convert::options(options, "options")?;
        let groups = Groups::from_js(label_key)?;
        let (model, data, device) = (model.inner.clone(), dataset.inner.clone(), self.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let e = match groups {
                Groups::Column(c) => explain_adata(&data, &model, &c, &options, &device, &mut observer).await,
                Groups::Labels(l) => explain_labelled(&data, &model, &l, GIVEN, &options, &device, &mut observer).await,
            };
            explanation_to_js(&e.map_err(to_js)?)
        }))
    }

    /// [`explain_scnym`] on an `.h5ad` read through `readAt(offset, length) -> Uint8Array`, a block
    /// of cells at a time: only the explained cells and (at most 10,000) reference cells are kept.
    #[wasm_bindgen(js_name = explainScnymH5ad)]
    #[allow(clippy::too_many_arguments)]
    pub fn explain_scnym_h5ad(
        &self,
        model: &JsScnymModel,
        length: f64,
        read_at: Function,
        name: &str,
        label_key: JsValue,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let options: ExplainOptions = convert::options(options, "options")?;
        let groups = Groups::from_js(label_key)?;
        let rows = open_h5ad_rows(JsSource::new(length, read_at), name, options.use_raw).map_err(to_js)?;
        let (labels, what) = match groups {
            Groups::Column(c) => (rows.obs.get(&c).map_err(to_js)?.to_strings(), format!("obs column '{c}'")),
            Groups::Labels(l) => (l, GIVEN.to_string()),
        };
        let (model, device) = (model.inner.clone(), self.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            explanation_to_js(&explain_h5ad_rows(&rows, &model, &labels, &what, &options, &device, &mut observer).await.map_err(to_js)?)
        }))
    }
}

const GIVEN: &str = "the labels given";

/// Which cells carry which label: an obs column, or one label per cell from the caller.
enum Groups {
    Column(String),
    Labels(Vec<Option<String>>),
}

impl Groups {
    fn from_js(value: JsValue) -> Result<Self, JsValue> {
        if let Some(column) = value.as_string() {
            return Ok(Self::Column(column));
        }
        if js_sys::Array::is_array(&value) {
            return serde_wasm_bindgen::from_value(value)
                .map(Self::Labels)
                .map_err(|e| to_js(SclabelError::InvalidOption { option: "label_key".into(), reason: format!("labels must be strings or null: {e}") }));
        }
        Err(to_js(SclabelError::InvalidOption { option: "label_key".into(), reason: "an obs column's name or one label per cell (an array)".into() }))
    }
}

fn explanation_to_js(e: &Explanation) -> Result<JsValue, JsValue> {
    let out = Object::new();
    convert::set(&out, "genes", convert::to_js(&e.genes)?)?;
    let cells: Vec<u32> = e.cells.iter().map(|&c| c as u32).collect();
    convert::set(&out, "cells", Uint32Array::from(&cells[..]))?;
    convert::set(&out, "attributions", Float32Array::from(&e.attributions[..]))?;
    convert::set(&out, "saliency", Float32Array::from(&e.saliency[..]))?;
    let ranking: Vec<u32> = e.ranking.iter().map(|&g| g as u32).collect();
    convert::set(&out, "ranking", Uint32Array::from(&ranking[..]))?;
    convert::set(&out, "target", e.target.clone())?;
    convert::set(&out, "n_samples", e.n_samples as u32)?;
    convert::set(&out, "abs_scale", e.abs_scale)?;
    convert::set(&out, "warnings", convert::to_js(&e.warnings)?)?;
    Ok(out.into())
}

/// The audit report as JS: per-cell typed arrays under Annotatability's names.
fn audit_to_js(r: &AuditReport) -> Result<JsValue, JsValue> {
    let out = Object::new();
    let cells: Vec<u32> = r.cells.iter().map(|&c| c as u32).collect();
    convert::set(&out, "cells", Uint32Array::from(&cells[..]))?;
    convert::set(&out, "n_obs", r.n_obs as u32)?;
    convert::set(&out, "labels", convert::names_to_js(&r.labels))?;
    convert::set(&out, "conf", Float32Array::from(&r.dynamics.confidence[..]))?;
    convert::set(&out, "var", Float32Array::from(&r.dynamics.variability[..]))?;
    let trusted: Vec<u8> = r.trusted.iter().map(|&t| u8::from(t)).collect();
    convert::set(&out, "trusted", Uint8Array::from(&trusted[..]))?;
    convert::set(&out, "category", convert::names_to_js(&r.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>()))?;
    convert::set(&out, "corrected_label", r.corrected_labels.as_deref().map(convert::names_to_js).unwrap_or(JsValue::NULL))?;
    if let Some(d) = &r.second {
        convert::set(&out, "conf_second", Float32Array::from(&d.confidence[..]))?;
        convert::set(&out, "var_second", Float32Array::from(&d.variability[..]))?;
    }
    convert::set(&out, "cutoffs", convert::to_js(&r.cutoffs)?)?;
    let noise = match &r.noise_run {
        Some(n) => convert::to_js(&serde_json::json!({ "flipped": n.flipped, "auroc": n.auroc }))?,
        None => JsValue::NULL,
    };
    convert::set(&out, "noise_run", noise)?;
    let genes = match &r.gene_scores {
        Some(g) => {
            let o = Object::new();
            convert::set(&o, "genes", convert::to_js(&g.genes)?)?;
            convert::set(&o, "conf_score_high", Float32Array::from(&g.conf_score_high[..]))?;
            convert::set(&o, "conf_score_low", Float32Array::from(&g.conf_score_low[..]))?;
            convert::set(&o, "conf_score_mid", Float32Array::from(&g.conf_score_mid[..]))?;
            o.into()
        }
        None => JsValue::NULL,
    };
    convert::set(&out, "gene_scores", genes)?;
    convert::set(&out, "class_names", convert::to_js(&r.class_names)?)?;
    convert::set(&out, "history", convert::to_js(&r.history)?)?;
    convert::set(&out, "backend", convert::to_js(&r.backend)?)?;
    convert::set(&out, "executor", convert::to_js(&r.executor)?)?;
    convert::set(&out, "normalization", convert::to_js(&r.normalization)?)?;
    convert::set(&out, "genes", convert::to_js(&r.genes)?)?;
    convert::set(&out, "gene_selection", convert::to_js(&r.gene_selection)?)?;
    convert::set(&out, "options", convert::to_js(&r.options)?)?;
    Ok(out.into())
}
