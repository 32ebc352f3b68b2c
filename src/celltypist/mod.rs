//! CellTypist's models (Domínguez Conde et al., Science 2022) in sclabel: a model file (`.pkl`,
//! celltypist's `Model.write`) read with the restricted pickle reader (`io::pickle`, nothing is
//! run), and its prediction as CellTypist's `classifier.py` makes it — the query as ln(CP10k+1),
//! the model's genes the query has (the others dropped from the model, as CellTypist does),
//! z = (x − mean) / scale with values above 10 set to 10, scores z·coefᵀ + intercept,
//! probabilities sigmoid(score); "best match" is the highest score, "prob match" every type with
//! p > 0.5 (joined with '|'), or Unassigned.
use crate::data::align::{align_genes, best_gene_ids, GeneOverlap};
use crate::data::anndata::AnnData;
use crate::data::matrix::CsrMatrix;
use crate::data::normalize::{detect_from_stats, log_factor, rescale_in_place, TargetScale};
use crate::error::{Result, SclabelError};
use crate::io::pickle::{self, Array, ArrayData, Value};

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

impl CelltypistModel {
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
        if let Some(i) = coef.iter().chain(&intercept).chain(&mean).chain(&scale).position(|v| !v.is_finite()) {
            return Err(bad(file, format!("a non-finite number in the model's parameters (value {i})")));
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
        Ok(Self { classifier, classes, features, coef, intercept, mean, scale, with_mean, description })
    }
}

/// A CellTypist prediction, under CellTypist's names.
#[derive(Debug, Clone, PartialEq)]
pub struct CelltypistPrediction {
    pub classes: Vec<String>,
    /// cells × classes: the linear scores and their sigmoid.
    pub decision: Vec<f64>,
    pub probability: Vec<f64>,
    /// "best match": the highest-scoring type.
    pub predicted_labels: Vec<String>,
    /// "prob match": every type above the threshold, joined with '|', or Unassigned.
    pub prob_match: Vec<String>,
    /// The best match's probability.
    pub conf_score: Vec<f64>,
    /// The model's genes the query has (the others are dropped from the model).
    pub genes_used: usize,
}

/// Predicts `adata` (X, or `.raw`) with `model`: X brought to ln(CP10k+1) with each cell's total
/// over all its genes (counts, ln or log2 input detected), then [`predict`]; `p_thres` for prob
/// match (CellTypist's default 0.5). Also returns the gene overlap.
pub fn predict_adata(model: &CelltypistModel, adata: &AnnData, use_raw: bool, p_thres: f64) -> Result<(CelltypistPrediction, GeneOverlap)> {
    let (x, var_names) = adata.matrix(use_raw)?;
    let stats = adata.value_stats(use_raw)?;
    let report = detect_from_stats(&stats, var_names)?;
    let ids = if use_raw { vec![("var index", var_names.as_slice())] } else { adata.gene_ids() };
    let (names, matched_by) = best_gene_ids(&ids, &model.features);
    let (mut kept, mut overlap) = align_genes(x, names, &model.features)?;
    overlap.matched_by = matched_by;
    rescale_in_place(&mut kept, log_factor(&report)?, stats.totals(&report.normalization), TargetScale::Cp10k);
    let have: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let present: Vec<bool> = model.features.iter().map(|g| have.contains(g.as_str())).collect();
    Ok((predict(model, &kept, &present, p_thres)?, overlap))
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
    let (mut predicted_labels, mut prob_match, mut conf_score) = (Vec::new(), Vec::new(), Vec::new());
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
        conf_score.push(probability[start + best]);
        let passing: Vec<&str> = (0..c).filter(|&k| probability[start + k] > p_thres).map(|k| model.classes[k].as_str()).collect();
        prob_match.push(if passing.is_empty() { UNASSIGNED.to_string() } else { passing.join("|") });
    }
    Ok(CelltypistPrediction { classes: model.classes.clone(), decision, probability, predicted_labels, prob_match, conf_score, genes_used: used.len() })
}
