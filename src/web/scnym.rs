//! scNym in the browser: train, predict, load / save / import bundles. Conversion only; the work is
//! in `crate::scnym`. Large numeric results cross as typed arrays, not JS arrays.
use std::rc::Rc;

use js_sys::{Float32Array, Function, Object, Promise, Uint32Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::data::matrix::CsrMatrix;
use crate::io::h5ad::open_h5ad_rows;
use crate::scnym::api::{
    fine_tune, open_prediction_rows, predict_adata, predict_h5ad_rows, prepare_prediction, train_transfer, train_transfer_h5ad, PredictReport, PreparedInput,
    Rescale, TransferOptions,
};
use crate::scnym::bundle::ScnymModel;
use crate::scnym::import::import_scnym;
use crate::scnym::predict::{predict_outputs, slots, PredictOptions, Prediction, PredictionOutputs, PredictionParts};
use crate::web::dataset::{JsDataset, JsSource};
use crate::web::observer::JsObserver;
use crate::web::session::JsSession;
use crate::web::{convert, error::to_js};

/// A trained or loaded scNym model, living on its session's device.
#[wasm_bindgen(js_name = ScnymModel)]
pub struct JsScnymModel {
    pub(crate) inner: Rc<ScnymModel>,
    warnings: Vec<String>,
}

#[wasm_bindgen(js_class = ScnymModel)]
impl JsScnymModel {
    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> Vec<String> {
        self.inner.classes.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn genes(&self) -> Vec<String> {
        self.inner.genes.clone()
    }

    /// Warnings from training (e.g. a class with a single cell).
    #[wasm_bindgen(getter)]
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// Architecture, input scale, provenance, config and training metrics.
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let m = &self.inner;
        convert::to_js(&serde_json::json!({
            "arch": m.arch, "input": m.input, "provenance": m.provenance, "config": m.config, "metrics": m.metrics,
        }))
    }

    /// The model bundle (safetensors bytes); async because the weights are read back from the GPU.
    #[wasm_bindgen(js_name = toBytes)]
    pub fn to_bytes(&self) -> Promise {
        let model = self.inner.clone();
        future_to_promise(async move {
            let bytes = model.to_bytes().await.map_err(to_js)?;
            Ok(Uint8Array::from(&bytes[..]).into())
        })
    }
}

/// A data set's rows aligned to a model's genes, with their rescaling still to do and the report
/// of its prediction, made once by `prepareScnymInput` for a prediction split by rows across
/// workers: `rows` → each worker's `predictScnymRows` (which rescales its rows) →
/// `finishScnymPrediction`.
#[wasm_bindgen(js_name = PreparedScnymInput)]
pub struct JsPreparedInput {
    prepared: PreparedInput,
    options: PredictOptions,
}

#[wasm_bindgen(js_class = PreparedScnymInput)]
impl JsPreparedInput {
    #[wasm_bindgen(getter, js_name = nRows)]
    pub fn n_rows(&self) -> usize {
        self.prepared.x.n_rows
    }

    /// The prediction's batch size: shares that start at whole batches give the whole's values
    /// exactly (the kernels round differently for a row at another place in its batch).
    #[wasm_bindgen(getter, js_name = batchSize)]
    pub fn batch_size(&self) -> usize {
        self.options.batch_size.max(1)
    }

    /// Rows `start..end` for a worker: CSR typed arrays (`{ nObs, nVars, indptr, indices, data }`)
    /// plus their rescaling (`rescale`: whether to; `logFactor`; `totals`, a Float64Array or null).
    pub fn rows(&self, start: usize, end: usize) -> Result<JsValue, JsValue> {
        self.check_range(start, end)?;
        // Straight from the prepared matrix: this copy out of the module is on the critical path
        // of a split prediction.
        let out = convert::csr_to_js(&self.prepared.x, start..end)?;
        let rescale = self.prepared.rescale.as_ref();
        convert::set(&out, "rescale", rescale.is_some())?;
        convert::set(&out, "logFactor", rescale.and_then(|r| r.log_factor).map(JsValue::from).unwrap_or(JsValue::NULL))?;
        let totals = rescale.and_then(|r| r.totals.as_deref()).map(|t| JsValue::from(js_sys::Float64Array::from(&t[start..end])));
        convert::set(&out, "totals", totals.unwrap_or(JsValue::NULL))?;
        Ok(out.into())
    }
}

impl JsPreparedInput {
    fn check_range(&self, start: usize, end: usize) -> Result<(), JsValue> {
        if start > end || end > self.prepared.x.n_rows {
            return Err(crate::web::error::invalid_option("rows", format!("{start}..{end} is not within the {} prepared cells", self.prepared.x.n_rows)));
        }
        Ok(())
    }

    fn row_range(&self, start: usize, end: usize) -> Result<PreparedInput, JsValue> {
        self.check_range(start, end)?;
        Ok(self.prepared.select_rows(&(start..end).collect::<Vec<_>>()))
    }
}

/// Where a share's rows go in a prediction split by rows: `first` of `total` rows, `rows` of them.
#[derive(Clone, Copy)]
struct SharePlace {
    total: usize,
    first: usize,
    rows: usize,
}

/// A worker's outputs as `{ probabilities, embedding, executor }` (typed arrays). With `place`,
/// `embedding` is the whole prediction's array with this share's rows in place, for the other
/// shares' rows to be copied into: the join then copies only those.
fn outputs_to_js(o: &PredictionOutputs, place: Option<SharePlace>) -> Result<JsValue, JsValue> {
    let out = Object::new();
    convert::set(&out, "probabilities", Float32Array::from(&o.probabilities[..]))?;
    let embedding = o.embedding.as_deref().map(|e| match place {
        Some(SharePlace { total, first, rows }) if rows > 0 => {
            let width = e.len() / rows;
            let whole = Float32Array::new_with_length((total * width) as u32);
            whole.subarray((first * width) as u32, ((first + rows) * width) as u32).copy_from(e);
            JsValue::from(whole)
        }
        _ => JsValue::from(Float32Array::from(e)),
    });
    convert::set(&out, "embedding", embedding.unwrap_or(JsValue::NULL))?;
    convert::set(&out, "executor", convert::to_js(&o.executor)?)?;
    Ok(out.into())
}

/// A prediction as the JS result (typed arrays for the per-cell numbers), keyed by the names scNym
/// gives its outputs in an AnnData (`scnym::predict::slots`).
fn prediction_to_js(p: &Prediction, report: &PredictReport, options: &PredictOptions, obs_names: Option<&[String]>) -> Result<JsValue, JsValue> {
    let out = Object::new();
    convert::set(&out, "classes", convert::to_js(&p.classes)?)?;
    convert::set(&out, slots::LABELS, convert::names_to_js(&p.labels))?;
    convert::set(&out, "predicted", Uint32Array::from(&p.predicted[..]))?;
    convert::set(&out, slots::CONFIDENCE, Float32Array::from(&p.confidence[..]))?;
    convert::set(&out, slots::PROBABILITIES, Float32Array::from(&p.probabilities[..]))?;
    convert::set(&out, slots::EMBEDDING, p.embedding.as_deref().map(|e| JsValue::from(Float32Array::from(e))).unwrap_or(JsValue::NULL))?;
    convert::set(&out, "embeddingDim", p.embedding_dim as u32)?;
    convert::set(&out, "executor", convert::to_js(&p.executor)?)?;
    convert::set(&out, "report", convert::to_js(report)?)?;
    convert::set(&out, "options", convert::to_js(options)?)?;
    if let Some(names) = obs_names {
        convert::set(&out, "obsNames", convert::to_js(&names)?)?;
    }
    Ok(out.into())
}

#[wasm_bindgen(js_class = Session)]
impl JsSession {
    /// Trains scNym on `reference` (cells labelled `Unlabeled` are unlabelled) and an optional
    /// `query` (all unlabelled). Resolves to a `ScnymModel`.
    #[wasm_bindgen(js_name = trainScnym)]
    pub fn train_scnym(
        &self,
        reference: &JsDataset,
        query: Option<JsDataset>,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let options: TransferOptions = convert::options(options, "options")?;
        let (reference, query, device) = (reference.inner.clone(), query.map(|q| q.inner.clone()), self.device.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let (model, warnings) = train_transfer(&reference, query.as_deref(), &options, &device, &mut observer).await.map_err(to_js)?;
            Ok(JsScnymModel { inner: Rc::new(model), warnings }.into())
        }))
    }

    /// `trainScnym` from `.h5ad` files read through `readAt(offset, length) -> Uint8Array` a block
    /// of cells at a time, never loaded: the reference's training genes are held as compact blocks
    /// of rows, the query's training subsample beside them (`crate::scnym::api::train_transfer_h5ad`).
    /// The query's three arguments are absent together.
    #[wasm_bindgen(js_name = trainScnymH5ad)]
    #[allow(clippy::too_many_arguments)]
    pub fn train_scnym_h5ad(
        &self,
        reference_length: f64,
        reference_read_at: Function,
        reference_name: &str,
        query_length: Option<f64>,
        query_read_at: Option<Function>,
        query_name: Option<String>,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let options: TransferOptions = convert::options(options, "options")?;
        let reference = open_h5ad_rows(JsSource::new(reference_length, reference_read_at), reference_name, options.use_raw).map_err(to_js)?;
        let query_raw = options.query_use_raw.unwrap_or(options.use_raw);
        let query = match (query_length, query_read_at) {
            (Some(length), Some(read_at)) => {
                Some(open_h5ad_rows(JsSource::new(length, read_at), query_name.as_deref().unwrap_or("query"), query_raw).map_err(to_js)?)
            }
            _ => None,
        };
        let device = self.device.device.clone();
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let (model, warnings) = train_transfer_h5ad(&reference, query.as_ref(), &options, &device, &mut observer).await.map_err(to_js)?;
            Ok(JsScnymModel { inner: Rc::new(model), warnings }.into())
        }))
    }

    /// As `trainScnym`, starting from `pretrained`'s weights (an atlas model fine-tuned on the
    /// atlas's cells as the labelled set and the query as the unlabelled target).
    #[wasm_bindgen(js_name = fineTuneScnym)]
    pub fn fine_tune_scnym(
        &self,
        pretrained: &JsScnymModel,
        reference: &JsDataset,
        query: Option<JsDataset>,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let options: TransferOptions = convert::options(options, "options")?;
        let (pretrained, reference, query, device) =
            (pretrained.inner.clone(), reference.inner.clone(), query.map(|q| q.inner.clone()), self.device.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let (model, warnings) = fine_tune(&pretrained, &reference, query.as_deref(), &options, &device, &mut observer).await.map_err(to_js)?;
            Ok(JsScnymModel { inner: Rc::new(model), warnings }.into())
        }))
    }

    /// Predicts `dataset` with `model`: { classes, scNym, predicted (Uint32Array), scNym_confidence
    /// (Float32Array), scNym_probabilities (Float32Array, cells × classes), X_scnym (Float32Array,
    /// cells × embeddingDim, or null), embeddingDim, executor, report, options }.
    #[wasm_bindgen(js_name = predictScnym)]
    pub fn predict_scnym(
        &self,
        model: &JsScnymModel,
        dataset: &JsDataset,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let o: PredictOptions = convert::options(options, "options")?;
        let (model, data, device) = (model.inner.clone(), dataset.inner.clone(), self.device.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let (p, report) = predict_adata(&model, &data, &o, &device, &mut observer).await.map_err(to_js)?;
            prediction_to_js(&p, &report, &o, None)
        }))
    }

    /// `dataset` as `model` takes it, prepared once for a prediction split by rows across workers
    /// (the same options as `predictScnym`).
    #[wasm_bindgen(js_name = prepareScnymInput)]
    pub fn prepare_scnym_input(&self, model: &JsScnymModel, dataset: &JsDataset, options: JsValue) -> Result<JsPreparedInput, JsValue> {
        let o: PredictOptions = convert::options(options, "options")?;
        let prepared = prepare_prediction(&model.inner, &dataset.inner, &o).map_err(to_js)?;
        Ok(JsPreparedInput { prepared, options: o })
    }

    /// A worker's share: `model` on prepared rows (`PreparedScnymInput.rows`, from another
    /// worker's module), rescaled here → `{ probabilities, embedding, executor }`.
    #[wasm_bindgen(js_name = predictScnymRows)]
    #[allow(clippy::too_many_arguments)]
    pub fn predict_scnym_rows(
        &self,
        model: &JsScnymModel,
        n_rows: usize,
        n_cols: usize,
        indptr: Vec<f64>,
        indices: Vec<u32>,
        data: Vec<f32>,
        rescale: bool,
        log_factor: Option<f64>,
        totals: Option<Vec<f64>>,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let o: PredictOptions = convert::options(options, "options")?;
        let mut x = CsrMatrix::new(n_rows, n_cols, indptr.into_iter().map(|p| p as u64).collect(), indices, data).map_err(to_js)?;
        if rescale {
            if totals.as_ref().is_some_and(|t| t.len() != n_rows) {
                return Err(crate::web::error::invalid_option("totals", format!("{} totals for {n_rows} rows", totals.map_or(0, |t| t.len()))));
            }
            Rescale { log_factor, totals }.apply(&mut x);
        }
        self.predict_rows(model, x, o, None, on_progress, signal)
    }

    /// As `predictScnymRows`, on rows of a prepared input held by this module (no copy through JS);
    /// `embedding` comes as the whole input's array with these rows in place (`outputs_to_js`).
    #[wasm_bindgen(js_name = predictPreparedRows)]
    pub fn predict_prepared_rows(
        &self,
        model: &JsScnymModel,
        prepared: &JsPreparedInput,
        start: usize,
        end: usize,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let x = prepared.row_range(start, end)?.into_model_input();
        let place = SharePlace { total: prepared.n_rows(), first: start, rows: end - start };
        self.predict_rows(model, x, prepared.options.clone(), Some(place), on_progress, signal)
    }

    /// The prediction of a prepared input from its workers' outputs in row order (`{ probabilities,
    /// executor }`): what `predictScnym` gives for the whole, but for `X_scnym`, which the caller
    /// joins from the workers' embeddings (null here; the options still say whether it was asked
    /// for).
    #[wasm_bindgen(js_name = finishScnymPrediction)]
    pub fn finish_scnym_prediction(&self, model: &JsScnymModel, prepared: &JsPreparedInput, outputs: Vec<JsValue>) -> Result<JsValue, JsValue> {
        let labels_only = PredictOptions { embedding: false, ..prepared.options.clone() };
        let mut parts = PredictionParts::new(&model.inner, &labels_only, prepared.prepared.x.n_rows).map_err(to_js)?;
        for o in outputs {
            let get = |key: &str| js_sys::Reflect::get(&o, &key.into());
            let probabilities = get("probabilities")?
                .dyn_into::<Float32Array>()
                .map_err(|_| crate::web::error::invalid_option("probabilities", "expected a Float32Array"))?
                .to_vec();
            let executor = serde_wasm_bindgen::from_value(get("executor")?).map_err(|e| crate::web::error::invalid_option("executor", e))?;
            parts.add_outputs(&model.inner, PredictionOutputs { probabilities, embedding: None, executor }).map_err(to_js)?;
        }
        let p = parts.finish(&model.inner).map_err(to_js)?;
        prediction_to_js(&p, &prepared.prepared.report, &prepared.options, None)
    }

    fn predict_rows(
        &self,
        model: &JsScnymModel,
        x: CsrMatrix,
        o: PredictOptions,
        place: Option<SharePlace>,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let (model, device) = (model.inner.clone(), self.device.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let outputs = predict_outputs(&model, &x, &o, &device, &mut observer).await.map_err(to_js)?;
            outputs_to_js(&outputs, place)
        }))
    }

    /// As `predictScnym`, over an `.h5ad` read a block of cells at a time through
    /// `readAt(offset, length) -> Uint8Array` (never held whole, never loaded as a data set):
    /// memory is the model, one block of the model's genes and the per-cell outputs. The result
    /// also carries `obsNames`.
    #[wasm_bindgen(js_name = predictScnymH5ad)]
    #[allow(clippy::too_many_arguments)]
    pub fn predict_scnym_h5ad(
        &self,
        model: &JsScnymModel,
        length: f64,
        read_at: Function,
        name: &str,
        options: JsValue,
        on_progress: Option<Function>,
        signal: JsValue,
    ) -> Result<Promise, JsValue> {
        let o: PredictOptions = convert::options(options, "options")?;
        let rows = open_prediction_rows(JsSource::new(length, read_at), name, &o).map_err(to_js)?;
        let (model, device) = (model.inner.clone(), self.device.device.clone());
        Ok(future_to_promise(async move {
            let mut observer = JsObserver::new(on_progress, signal);
            let (p, report) = predict_h5ad_rows(&model, &rows, &o, &device, &mut observer).await.map_err(to_js)?;
            prediction_to_js(&p, &report, &o, Some(&rows.obs_names))
        }))
    }

    /// Loads a model bundle (bytes from `ScnymModel.toBytes()` or the CLI).
    #[wasm_bindgen(js_name = loadScnymModel)]
    pub fn load_scnym_model(&self, bytes: &[u8]) -> Result<JsScnymModel, JsValue> {
        let model = ScnymModel::from_bytes(bytes, &self.device.device).map_err(to_js)?;
        Ok(JsScnymModel { inner: Rc::new(model), warnings: Vec::new() })
    }

    /// Imports a model trained by scNym 0.4 in Python: the bytes of its `torch.save`d weights and
    /// its gene and class lists.
    #[wasm_bindgen(js_name = importScnym)]
    pub fn import_scnym(&self, weights: &[u8], genes: Vec<String>, classes: Vec<String>) -> Result<JsScnymModel, JsValue> {
        let model = import_scnym(weights, "scNym weights", genes, classes, &self.device.device).map_err(to_js)?;
        Ok(JsScnymModel { inner: Rc::new(model), warnings: Vec::new() })
    }
}
