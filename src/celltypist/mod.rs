//! CellTypist's models (Domínguez Conde et al., Science 2022) in sclabel: a model file (`.pkl`,
//! celltypist's `Model.write`) read with the restricted pickle reader (`io::pickle`, nothing is
//! run), and its prediction as CellTypist's `classifier.py` makes it — the query as ln(CP10k+1),
//! the model's genes the query has (the others dropped from the model, as CellTypist does),
//! z = (x − mean) / scale with values above 10 set to 10, scores z·coefᵀ + intercept,
//! probabilities sigmoid(score); "best match" is the highest score, "prob match" every type with
//! p > 0.5 (joined with '|'), or Unassigned.
use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::cluster::{majority_vote, over_cluster, OverClusterOptions};
use crate::data::align::{align_genes, best_gene_ids};
use crate::data::anndata::{AnnData, ObsTable};
use crate::data::matrix::CsrMatrix;
use crate::data::normalize::{detect_from_stats, log_factor, rescale_in_place, TargetScale};
use crate::error::{Result, SclabelError};
use crate::io::h5ad::H5adRows;
use crate::io::h5ad_export::{H5adAdditions, ObsValues};
use crate::io::pickle::{self, Array, ArrayData, Value};
use crate::scnym::api::{gene_ids, PredictReport, StreamedInput};
use crate::scnym::bundle::{tensors_sha256, FORMAT, FORMAT_VERSION};
use crate::train::progress::{Observer, Progress};

/// What a prediction labels a cell no type passes the threshold for (CellTypist's word).
pub const UNASSIGNED: &str = "Unassigned";

/// A CellTypist model: one-vs-rest linear scores over its genes after a standard scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct CelltypistModel {
    /// `LogisticRegression` or `SGDClassifier`.
    pub classifier: String,
    pub classes: Vec<String>,
    pub features: Vec<String>,
    /// classes × features, row-major.
    pub coef: Vec<f64>,
    pub intercept: Vec<f64>,
    /// The scaler's per-gene mean (subtracted only when `with_mean`) and scale.
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub with_mean: bool,
    /// The file's `description` (date, details, url, source, version, number_celltypes), as text.
    pub description: Vec<(String, String)>,
}

fn bad(file: &str, reason: impl Into<String>) -> SclabelError {
    SclabelError::InvalidFile { file: file.to_string(), reason: reason.into() }
}

fn numbers(a: &Value, what: &str, file: &str) -> Result<(Vec<usize>, Vec<f64>)> {
    match a {
        Value::Array(Array { shape, data: ArrayData::F64(v) }) => Ok((shape.clone(), v.clone())),
        _ => Err(bad(file, format!("{what} is not a numeric array"))),
    }
}

fn strings(a: &Value, what: &str, file: &str) -> Result<Vec<String>> {
    let items = match a {
        Value::Array(Array { data: ArrayData::Objects(v), .. }) | Value::List(v) => v,
        _ => return Err(bad(file, format!("{what} is not an array of names"))),
    };
    items
        .iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            _ => Err(bad(file, format!("{what} holds something that is not a name"))),
        })
        .collect()
}

/// What sclabel calls a CellTypist model in its bundles (safetensors metadata `model`).
pub const BUNDLE_MODEL: &str = "celltypist";

impl CelltypistModel {
    /// Reads a CellTypist model: its `.pkl` (CellTypist's own file) or the bundle
    /// [`to_bundle_bytes`](Self::to_bundle_bytes) wrote, told apart by their first bytes.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Self> {
        // A pickle of protocol 2 or later starts with PROTO (0x80); a safetensors file with its
        // header's length, then '{'.
        match bytes {
            [0x80, ..] => Self::from_pickle(bytes, file),
            [_, _, _, _, _, _, _, _, b'{', ..] => Self::from_bundle(bytes, file),
            _ => Err(bad(file, "neither a CellTypist model (.pkl) nor an sclabel CellTypist bundle (.safetensors)")),
        }
    }

    /// Whether `bytes` are a CellTypist model file: a pickle, or an sclabel bundle of a CellTypist
    /// model (not checked further).
    pub fn is_celltypist(bytes: &[u8]) -> bool {
        bytes.first() == Some(&0x80)
            || SafeTensors::read_metadata(bytes).ok().and_then(|(_, h)| h.metadata().as_ref().and_then(|m| m.get("model").cloned())).as_deref()
                == Some(BUNDLE_MODEL)
    }

    /// The model as an sclabel bundle: safetensors (no code, readable by any safetensors reader)
    /// with `coef`, `intercept`, `mean`, `scale` (f64) and the names and description as metadata.
    pub fn to_bundle_bytes(&self) -> Result<Vec<u8>> {
        let (c, g) = (self.classes.len(), self.features.len());
        let le = |v: &[f64]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
        let tensors = [
            ("coef", vec![c, g], le(&self.coef)),
            ("intercept", vec![c], le(&self.intercept)),
            ("mean", vec![g], le(&self.mean)),
            ("scale", vec![g], le(&self.scale)),
        ];
        let mut views = Vec::new();
        for (name, shape, bytes) in &tensors {
            views.push((name.to_string(), TensorView::new(Dtype::F64, shape.clone(), bytes).map_err(|e| bad("bundle", e.to_string()))?));
        }
        let mut meta = HashMap::new();
        meta.insert("tensors_sha256".to_string(), tensors_sha256(views.iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data()))));
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        meta.insert("model".to_string(), BUNDLE_MODEL.to_string());
        meta.insert("classifier".to_string(), self.classifier.clone());
        meta.insert("classes".to_string(), json(&self.classes));
        meta.insert("features".to_string(), json(&self.features));
        meta.insert("with_mean".to_string(), self.with_mean.to_string());
        meta.insert("description".to_string(), json(&self.description));
        safetensors::serialize(views, Some(meta)).map_err(|e| bad("bundle", e.to_string()))
    }

    fn from_bundle(bytes: &[u8], file: &str) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(file, format!("not a safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(file, e.to_string()))?;
        let meta = header.metadata().clone().ok_or_else(|| bad(file, "no metadata: not an sclabel bundle"))?;
        let get = |k: &str| meta.get(k).ok_or_else(|| bad(file, format!("metadata has no '{k}'")));
        if get("format")? != FORMAT {
            return Err(bad(file, format!("format is '{}', expected '{FORMAT}'", get("format")?)));
        }
        let version: u32 = get("format_version")?.parse().map_err(|_| bad(file, "format_version is not a number"))?;
        if version > FORMAT_VERSION {
            return Err(SclabelError::UnsupportedVersion {
                file: file.into(),
                what: "bundle format version".into(),
                found: version.to_string(),
                supported: format!("up to {FORMAT_VERSION}"),
                advice: "update sclabel".into(),
            });
        }
        if get("model")? != BUNDLE_MODEL {
            return Err(bad(file, format!("an sclabel bundle of a '{}' model, not a CellTypist model (load it with loadModel)", get("model")?)));
        }
        let want = get("tensors_sha256")?;
        let got = tensors_sha256(st.tensors().iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())));
        if &got != want {
            return Err(bad(file, format!("its tensors' SHA-256 is {got}, not the {want} it was saved with: the file is damaged")));
        }
        fn parse<T: serde::de::DeserializeOwned>(s: &str, key: &str, file: &str) -> Result<T> {
            serde_json::from_str(s).map_err(|e| bad(file, format!("metadata '{key}': {e}")))
        }
        let tensor = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
            let v = st.tensor(name).map_err(|_| bad(file, format!("no tensor '{name}'")))?;
            if v.dtype() != Dtype::F64 {
                return Err(bad(file, format!("tensor '{name}' is {:?}, expected F64", v.dtype())));
            }
            Ok((v.shape().to_vec(), v.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()))
        };
        let classes: Vec<String> = parse(get("classes")?, "classes", file)?;
        let features: Vec<String> = parse(get("features")?, "features", file)?;
        let (c, g) = (classes.len(), features.len());
        let (cshape, coef) = tensor("coef")?;
        let (ishape, intercept) = tensor("intercept")?;
        let (mshape, mean) = tensor("mean")?;
        let (sshape, scale) = tensor("scale")?;
        if cshape != [c, g] || ishape != [c] || mshape != [g] || sshape != [g] {
            return Err(bad(
                file,
                format!("tensor shapes coef {cshape:?}, intercept {ishape:?}, mean {mshape:?}, scale {sshape:?} do not fit {c} types × {g} genes"),
            ));
        }
        let model = Self {
            classifier: get("classifier")?.clone(),
            classes,
            features,
            coef,
            intercept,
            mean,
            scale,
            with_mean: get("with_mean")? == "true",
            description: parse(get("description")?, "description", file)?,
        };
        model.check(file)?;
        Ok(model)
    }

    /// Checks what prediction relies on: finite parameters, positive scales.
    fn check(&self, file: &str) -> Result<()> {
        if let Some(i) = self.coef.iter().chain(&self.intercept).chain(&self.mean).chain(&self.scale).position(|v| !v.is_finite()) {
            return Err(bad(file, format!("a non-finite number in the model's parameters (value {i})")));
        }
        if let Some(i) = self.scale.iter().position(|&v| v <= 0.0) {
            return Err(bad(file, format!("the scaler's scale for gene '{}' is {} (must be positive)", self.features[i], self.scale[i])));
        }
        Ok(())
    }

    /// Reads a CellTypist model file (`file` names it in errors).
    pub fn from_pickle(bytes: &[u8], file: &str) -> Result<Self> {
        let top = pickle::read(bytes).map_err(|e| bad(file, format!("not a CellTypist model: {e}")))?;
        let field =
            |v: &Value, key: &str, what: &str| -> Result<Value> { pickle::get(v, key).cloned().ok_or_else(|| bad(file, format!("{what} has no '{key}'"))) };
        let model = field(&top, "Model", "the file")?;
        let scaler = field(&top, "Scaler_", "the file")?;
        let classifier = match &model {
            Value::Object { class, .. } => class.rsplit('.').next().unwrap_or_default().to_string(),
            _ => return Err(bad(file, "'Model' is not an sklearn classifier")),
        };
        let classes = strings(&field(&model, "classes_", "the classifier")?, "classes_", file)?;
        let features = strings(&field(&model, "features", "the classifier")?, "features", file)?;
        let (cshape, coef) = numbers(&field(&model, "coef_", "the classifier")?, "coef_", file)?;
        let (_, intercept) = numbers(&field(&model, "intercept_", "the classifier")?, "intercept_", file)?;
        let (c, g) = (classes.len(), features.len());
        if c == 2 && cshape.first() == Some(&1) {
            return Err(bad(file, "a two-class model (one score for both types) is not supported yet"));
        }
        if cshape != [c, g] || intercept.len() != c {
            return Err(bad(file, format!("coef_ is {cshape:?} and intercept_ has {} values for {c} types × {g} genes", intercept.len())));
        }
        let with_mean = !matches!(pickle::get(&scaler, "with_mean"), Some(Value::Bool(false)));
        let mean = match pickle::get(&scaler, "mean_") {
            Some(v @ Value::Array(_)) => numbers(v, "the scaler's mean_", file)?.1,
            _ if !with_mean => vec![0.0; g],
            _ => return Err(bad(file, "the scaler has no mean_")),
        };
        let scale = match pickle::get(&scaler, "scale_") {
            Some(v @ Value::Array(_)) => numbers(v, "the scaler's scale_", file)?.1,
            _ => vec![1.0; g],
        };
        if mean.len() != g || scale.len() != g {
            return Err(bad(file, format!("the scaler has {} means and {} scales for {g} genes", mean.len(), scale.len())));
        }
        let description = match pickle::get(&top, "description") {
            Some(Value::Dict(pairs)) => pairs
                .iter()
                .filter_map(|(k, v)| match (k, v) {
                    (Value::Str(k), Value::Str(v)) => Some((k.clone(), v.clone())),
                    (Value::Str(k), Value::Int(v)) => Some((k.clone(), v.to_string())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let model = Self { classifier, classes, features, coef, intercept, mean, scale, with_mean, description };
        model.check(file)?;
        Ok(model)
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("metadata serialises")
}
/// A CellTypist prediction, under CellTypist's names.
#[derive(Debug, Clone, PartialEq)]
pub struct CelltypistPrediction {
    pub classes: Vec<String>,
    /// cells × classes: the linear scores and their sigmoid.
    pub decision: Vec<f64>,
    pub probability: Vec<f64>,
    /// "best match": the highest-scoring type, and its index in `classes`.
    pub predicted_labels: Vec<String>,
    pub best: Vec<u32>,
    /// "prob match": every type above the threshold, joined with '|', or Unassigned.
    pub prob_match: Vec<String>,
    /// The best match's probability.
    pub conf_score: Vec<f64>,
    /// The model's genes the query has (the others are dropped from the model).
    pub genes_used: usize,
    /// With majority voting: each cell's cluster's label, its cluster, and how the clusters were
    /// made.
    pub majority_voting: Option<Vec<String>>,
    pub over_clustering: Option<Vec<u32>>,
    pub clustering: Option<String>,
}

impl CelltypistPrediction {
    /// What CellTypist writes into an AnnData's obs: predicted_labels, conf_score and, with
    /// majority voting, over_clustering and majority_voting.
    pub fn anndata_additions(&self) -> H5adAdditions {
        let labels = |v: &[String]| ObsValues::Categorical(v.iter().cloned().map(Some).collect());
        let mut obs = vec![
            ("predicted_labels".to_string(), labels(&self.predicted_labels)),
            ("conf_score".to_string(), ObsValues::F32(self.conf_score.iter().map(|&v| v as f32).collect())),
        ];
        if let (Some(v), Some(c)) = (&self.majority_voting, &self.over_clustering) {
            obs.push(("over_clustering".to_string(), labels(&c.iter().map(u32::to_string).collect::<Vec<_>>())));
            obs.push(("majority_voting".to_string(), labels(v)));
        }
        H5adAdditions { obs, obsm: Vec::new() }
    }
}

/// Options of a CellTypist prediction (celltypist.annotate's arguments), as every door takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct CelltypistOptions {
    /// "prob match" threshold (CellTypist's `p_thres`).
    pub p_thres: f64,
    /// Use `.raw` instead of X.
    pub use_raw: bool,
    /// Also vote: each cluster of an over-clustering takes its most common label
    /// (`majority_voting`).
    pub majority_voting: bool,
    /// An obs column whose values are the clusters to vote in (CellTypist's `over_clustering`);
    /// otherwise the query is over-clustered (`over_cluster`).
    pub over_clustering: Option<String>,
    pub over_cluster: OverClusterOptions,
    /// A cluster whose most common label has fewer than this share of its cells is labelled
    /// `Heterogeneous` (`min_prop`).
    pub min_prop: f64,
}

impl Default for CelltypistOptions {
    fn default() -> Self {
        Self { p_thres: 0.5, use_raw: false, majority_voting: false, over_clustering: None, over_cluster: OverClusterOptions::default(), min_prop: 0.0 }
    }
}

/// What a low gene overlap means for a CellTypist prediction (its warning's consequence): the
/// model's genes the data lack are dropped from every score, as CellTypist drops them.
const MISSING_GENES: &str = "the others are left out of every score, as CellTypist does, so the labels may be unreliable";

/// CellTypist's `annotate` of `adata` (X, or `.raw`) with `model`: X brought to ln(CP10k+1) with
/// each cell's total over all its genes (counts, ln or log2 input detected), [`predict`], and with
/// `majority_voting` the vote within clusters (an obs column's, or an over-clustering of the
/// cells). Also returns what a prediction reports: gene overlap, input scale, warnings.
pub async fn annotate<O: Observer>(
    model: &CelltypistModel,
    adata: &AnnData,
    options: &CelltypistOptions,
    observer: &mut O,
) -> Result<(CelltypistPrediction, PredictReport)> {
    check_options(options)?;
    let use_raw = options.use_raw;
    let (x, var_names) = adata.matrix(use_raw)?;
    let stats = adata.value_stats(use_raw)?;
    let normalization = detect_from_stats(&stats, var_names)?;
    let (names, matched_by) = best_gene_ids(&gene_ids(adata, use_raw)?, &model.features);
    let (mut kept, mut overlap) = align_genes(x, names, &model.features)?;
    overlap.matched_by = matched_by;
    rescale_in_place(&mut kept, log_factor(&normalization)?, stats.totals(&normalization.normalization), TargetScale::Cp10k);
    let have: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let present: Vec<bool> = model.features.iter().map(|g| have.contains(g.as_str())).collect();
    let mut prediction = predict(model, &kept, &present, options.p_thres)?;
    drop(kept);
    if options.majority_voting {
        let (clusters, description) = match &options.over_clustering {
            Some(column) => clusters_of(&adata.obs, &adata.obs_names, column)?,
            None => {
                let oc = over_cluster(x, var_names, &stats, &options.over_cluster, observer).await?;
                (oc.clusters, oc.description)
            }
        };
        vote(&mut prediction, clusters, description, options.min_prop)?;
    }
    let warnings = overlap.low_warning(MISSING_GENES).into_iter().collect();
    Ok((prediction, PredictReport { overlap, normalization, warnings }))
}

/// CellTypist's `annotate` of an `.h5ad` read a block of cells at a time (never loaded): only the
/// model's genes are kept, at ln(CP10k+1) from each cell's totals over all its genes (one pass over
/// the values first), so the result equals [`annotate`] of the loaded file. Majority voting takes
/// an obs column's clusters (`over_clustering`); over-clustering needs the data set loaded.
pub async fn annotate_h5ad_rows<O: Observer>(
    model: &CelltypistModel,
    rows: &H5adRows,
    options: &CelltypistOptions,
    observer: &mut O,
) -> Result<(CelltypistPrediction, PredictReport)> {
    check_options(options)?;
    if options.majority_voting && options.over_clustering.is_none() {
        return Err(SclabelError::InvalidOption {
            option: "majority_voting".into(),
            reason:
                "over-clustering the cells needs every gene of every cell: load the file first (load()), or name an obs column of clusters (over_clustering)"
                    .into(),
        });
    }
    let input = StreamedInput::for_genes_at(rows, &model.features, true, "data", TargetScale::Cp10k)?;
    let present = input.present();
    let block = rows.block_rows();
    let n_blocks = rows.n_rows.div_ceil(block.max(1));
    let mut parts: Vec<CelltypistPrediction> = Vec::new();
    for (b, start) in (0..rows.n_rows).step_by(block.max(1)).enumerate() {
        let end = (start + block).min(rows.n_rows);
        parts.push(predict(model, &input.read(rows, start..end)?, &present, options.p_thres)?);
        observer.on_progress(&Progress::predicting(b + 1, n_blocks, end, rows.n_rows)).await?;
    }
    let mut prediction = CelltypistPrediction::joined(model, parts, present.iter().filter(|&&p| p).count());
    if options.majority_voting {
        let column = options.over_clustering.as_deref().expect("checked above");
        let (clusters, description) = clusters_of(&rows.obs, &rows.obs_names, column)?;
        vote(&mut prediction, clusters, description, options.min_prop)?;
    }
    let warnings = input.overlap.low_warning(MISSING_GENES).into_iter().collect();
    Ok((prediction, PredictReport { overlap: input.overlap, normalization: input.normalization, warnings }))
}

fn check_options(options: &CelltypistOptions) -> Result<()> {
    if !(0.0..=1.0).contains(&options.p_thres) {
        return Err(SclabelError::InvalidOption { option: "p_thres".into(), reason: format!("must be between 0 and 1 (got {})", options.p_thres) });
    }
    Ok(())
}

/// The clusters an obs column gives (CellTypist's `over_clustering`), as codes, and a sentence.
fn clusters_of(obs: &ObsTable, obs_names: &[String], column: &str) -> Result<(Vec<u32>, String)> {
    let values = obs.get(column)?.to_strings();
    let mut codes = HashMap::new();
    let mut clusters = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let v = v.as_ref().ok_or_else(|| SclabelError::InvalidOption {
            option: "over_clustering".into(),
            reason: format!("obs '{column}' has no value for cell '{}'", obs_names.get(i).map_or("?", String::as_str)),
        })?;
        let next = codes.len() as u32;
        clusters.push(*codes.entry(v.clone()).or_insert(next));
    }
    Ok((clusters, format!("{} clusters of obs '{column}'", codes.len())))
}

/// Majority voting of `prediction`'s best matches within `clusters`.
fn vote(prediction: &mut CelltypistPrediction, clusters: Vec<u32>, description: String, min_prop: f64) -> Result<()> {
    prediction.majority_voting = Some(majority_vote(&prediction.predicted_labels, &clusters, min_prop)?);
    prediction.over_clustering = Some(clusters);
    prediction.clustering = Some(description);
    Ok(())
}

impl CelltypistPrediction {
    /// Predictions of consecutive blocks of cells as one.
    fn joined(model: &CelltypistModel, parts: Vec<CelltypistPrediction>, genes_used: usize) -> Self {
        let mut out = CelltypistPrediction {
            classes: model.classes.clone(),
            decision: Vec::new(),
            probability: Vec::new(),
            predicted_labels: Vec::new(),
            best: Vec::new(),
            prob_match: Vec::new(),
            conf_score: Vec::new(),
            genes_used,
            majority_voting: None,
            over_clustering: None,
            clustering: None,
        };
        for p in parts {
            out.decision.extend(p.decision);
            out.probability.extend(p.probability);
            out.predicted_labels.extend(p.predicted_labels);
            out.best.extend(p.best);
            out.prob_match.extend(p.prob_match);
            out.conf_score.extend(p.conf_score);
        }
        out
    }
}

/// Predicts `x` (cells × the model's genes, ln(CP10k+1)); `present[i]`: whether the data had gene
/// `i` (genes it lacks are dropped from the model, as CellTypist drops them, not scored as zero).
pub fn predict(model: &CelltypistModel, x: &CsrMatrix, present: &[bool], p_thres: f64) -> Result<CelltypistPrediction> {
    let (c, g) = (model.classes.len(), model.features.len());
    if x.n_cols != g || present.len() != g {
        return Err(SclabelError::shape(format!("{} columns and {} presence flags for the model's {g} genes", x.n_cols, present.len())));
    }
    let used: Vec<usize> = (0..g).filter(|&i| present[i]).collect();
    if used.is_empty() {
        return Err(SclabelError::genes(format!(
            "none of the model's {g} genes is in the data (e.g. {})",
            model.features.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut z = vec![0f64; g];
    let (mut decision, mut probability) = (Vec::with_capacity(x.n_rows * c), Vec::with_capacity(x.n_rows * c));
    let (mut predicted_labels, mut best_index, mut prob_match, mut conf_score) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..x.n_rows {
        // Scaled with the zeros too: a gene at 0 in a cell is (0 − mean) / scale.
        for &i in &used {
            z[i] = if model.with_mean { -model.mean[i] / model.scale[i] } else { 0.0 };
        }
        for p in x.indptr[r] as usize..x.indptr[r + 1] as usize {
            let i = x.indices[p] as usize;
            let centred = if model.with_mean { x.data[p] as f64 - model.mean[i] } else { x.data[p] as f64 };
            z[i] = centred / model.scale[i];
        }
        for &i in &used {
            z[i] = z[i].min(10.0);
        }
        let start = decision.len();
        for cls in 0..c {
            let row = &model.coef[cls * g..(cls + 1) * g];
            let s: f64 = used.iter().map(|&i| z[i] * row[i]).sum::<f64>() + model.intercept[cls];
            decision.push(s);
            probability.push(1.0 / (1.0 + (-s).exp()));
        }
        let scores = &decision[start..];
        let best = (0..c).fold(0, |b, k| if scores[k] > scores[b] { k } else { b });
        predicted_labels.push(model.classes[best].clone());
        best_index.push(best as u32);
        conf_score.push(probability[start + best]);
        let passing: Vec<&str> = (0..c).filter(|&k| probability[start + k] > p_thres).map(|k| model.classes[k].as_str()).collect();
        prob_match.push(if passing.is_empty() { UNASSIGNED.to_string() } else { passing.join("|") });
    }
    Ok(CelltypistPrediction {
        classes: model.classes.clone(),
        decision,
        probability,
        predicted_labels,
        best: best_index,
        prob_match,
        conf_score,
        genes_used: used.len(),
        majority_voting: None,
        over_clustering: None,
        clustering: None,
    })
}
