//! scNym on AnnData: prepare the input as scNym does (ln(CPM+1), labels with `Unlabeled`, domains,
//! splits), train, and predict with gene alignment. What the CLI and the wasm bindings call.
use serde::{Deserialize, Serialize};

use crate::data::align::{align_genes, best_gene_ids, check_unique, gene_map, is_unique, GeneIdKind, GeneOverlap};
use crate::data::anndata::AnnData;
use crate::data::anndata::ObsTable;
use crate::data::labels::{check_trainable, encode_labels, sorted_codes, LabelEncoding};
use crate::data::matrix::CsrMatrix;
use crate::data::normalize::{
    detect_from_stats, log_factor, rescale_block_in_place, rescale_in_place, to_log_normalized_with, Normalization, NormalizationReport, TargetScale,
    ValueStats,
};
use crate::data::row_blocks::{RowBlocks, RowSource};
use crate::error::{Result, SclabelError};
use crate::io::h5ad::{open_h5ad_rows, ColumnMap, H5adRows, Source};
use crate::scnym::bundle::{InputSpec, Provenance, ScnymModel};
use crate::scnym::config::ScnymConfig;
use crate::scnym::finetune::pretrained_for;
use crate::scnym::model::ArchSpec;
use crate::scnym::predict::{predict, PredictOptions, Prediction, PredictionParts};
use crate::scnym::train::{train, Split, TrainingData};
use crate::train::progress::Observer;
use burn::prelude::Device;

/// ln(1e6 + 1): the largest value ln(CPM+1) can take (scNym's upper check).
pub const MAX_LOG_CPM: f32 = 13.815_512;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct TransferOptions {
    /// obs column with cell types; `Unlabeled` marks the cells to transfer labels to.
    pub label_key: String,
    /// obs column with the domain (batch, chemistry, donor) of each cell, for the adversary.
    pub domain_key: Option<String>,
    /// obs column with `train` / `test` / `val` per labelled cell (scNym's `scNym_split`).
    pub split_key: Option<String>,
    /// Labels treated like `Unlabeled`... but left out of training entirely (e.g. `unlabeled_QCfail`).
    pub exclude_labels: Vec<String>,
    #[cfg_attr(test, ts(type = "ScnymPreset"))]
    pub preset: String,
    /// scNym-style config (JSON object) merged into a copy of the preset.
    #[cfg_attr(test, ts(as = "Option<crate::scnym::config::ScnymConfig>"))]
    pub config: Option<serde_json::Value>,
    /// Convert whatever scale X is on (counts, ln(CP10k+1), …) to ln(CPM+1). When false, data
    /// that isn't ln(CPM+1) is refused with a message saying so (scNym's checks).
    pub normalize: bool,
    /// Use `.raw` instead of X.
    pub use_raw: bool,
    /// Use the query's `.raw` instead of its X; `None` = as `use_raw`. A reference and a query often
    /// differ: an atlas with scaled X and log-normalised `.raw` against a query of raw counts.
    pub query_use_raw: Option<bool>,
    /// `normalize` for the query; `None` = as `normalize`. An atlas reference is already ln(CPM+1)
    /// over all of its source's genes (re-normalising its gene subset would change it), while a
    /// user's query often holds counts.
    pub query_normalize: Option<bool>,
    /// At most this many query cells take part in training as the unlabelled set: a seeded
    /// uniform subsample (from the config's seed) when the query has more, said in the warnings.
    /// MixMatch and the adversary see a few thousand unlabelled cells per epoch, so a large
    /// subsample loses nothing while a 1M-cell query would not fit in a tab; every cell is still
    /// predicted afterwards. `None`: every query cell.
    pub max_query_cells: Option<usize>,
    /// Train on these genes only (those of them the data have; with a query, those both have),
    /// e.g. highly variable genes; `None`: every gene (every shared gene).
    pub genes: Option<Vec<String>>,
}

/// Default of [`TransferOptions::max_query_cells`].
pub const MAX_QUERY_CELLS: usize = 50_000;

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            label_key: "cell_type".into(),
            domain_key: None,
            split_key: None,
            exclude_labels: Vec::new(),
            preset: "new_identity_discovery".into(),
            config: None,
            normalize: false,
            use_raw: false,
            query_use_raw: None,
            query_normalize: None,
            max_query_cells: Some(MAX_QUERY_CELLS),
            genes: None,
        }
    }
}

/// Brings X to ln(CPM+1), or explains why it isn't and how to fix it.
pub fn prepare_input(x: &CsrMatrix, genes: &[String], normalize: bool, what: &str) -> Result<(CsrMatrix, NormalizationReport)> {
    prepare_input_with(x, genes, &ValueStats::of(x), normalize, what)
}

/// [`prepare_input`] with the value statistics of the whole rows (see `AnnData::value_stats`).
pub fn prepare_input_with(x: &CsrMatrix, genes: &[String], stats: &ValueStats, normalize: bool, what: &str) -> Result<(CsrMatrix, NormalizationReport)> {
    if normalize {
        return to_log_normalized_with(x, genes, stats, TargetScale::Cpm);
    }
    Ok((x.clone(), check_input(stats, genes, false, what)?))
}

/// The detected scale of data with these value statistics, checked against what a scNym model
/// takes: ln(CPM+1), or (with `normalize`) anything convertible to it.
pub fn check_input(stats: &ValueStats, genes: &[String], normalize: bool, what: &str) -> Result<NormalizationReport> {
    let report = detect_from_stats(stats, genes)?;
    let fix = "convert it to ln(CPM+1) first, or ask sclabel to (normalize: true / --normalize)";
    match &report.normalization {
        Normalization::Scaled => Err(SclabelError::values(format!("{what}: {}", report.description))),
        _ if normalize => Ok(report),
        Normalization::RawCounts => {
            Err(SclabelError::values(format!("{what}: X holds raw counts (all values are integers); scNym models expect ln(CPM+1): {fix}")))
        }
        Normalization::LinearNormalized | Normalization::Log2Normalized { .. } => {
            Err(SclabelError::values(format!("{what}: {}; scNym models expect ln(CPM+1): {fix}", report.description)))
        }
        Normalization::LogNormalized { scale: Some(s) } if (s / 1e6 - 1.0).abs() > 0.01 => {
            Err(SclabelError::values(format!("{what}: X holds ln(x+1) of counts normalised to {s:.0} per cell, not 1e6; scNym models expect ln(CPM+1): {fix}")))
        }
        _ if report.max > MAX_LOG_CPM * 1.0001 => {
            Err(SclabelError::values(format!("{what}: max value {:.2} exceeds ln(1e6+1) = 13.82, so X is not ln(CPM+1): {fix}", report.max)))
        }
        _ => Ok(report),
    }
}

/// `x` (over `genes`) as a model over `model_genes` takes it: the model's columns are kept first
/// (the whole matrix is never copied), then, with `normalize`, converted to ln(CPM+1) with each
/// cell's totals over *all* of its genes — the same values as normalising everything, then
/// subsetting. `genes` are the data's identifiers (the var index first, then other identifier
/// columns): the one sharing the most genes with the model is matched (`overlap.matched_by`).
/// `stats`: what normalisation needs from the whole rows (`AnnData::value_stats`).
pub fn kept_model_input(
    x: &CsrMatrix,
    genes: &[(&str, &[String])],
    stats: &ValueStats,
    model_genes: &[String],
    normalize: bool,
    what: &str,
) -> Result<(CsrMatrix, NormalizationReport, GeneOverlap)> {
    let (mut kept, report, overlap, rescale) = aligned_model_input(x, genes, stats, model_genes, normalize, what)?;
    if let Some(r) = rescale {
        r.apply(&mut kept);
    }
    Ok((kept, report, overlap))
}

/// As [`kept_model_input`], before the rescaling to ln(CPM+1), which is returned to do (each row
/// on its own, so rows may be rescaled apart, e.g. by the workers of a split prediction).
fn aligned_model_input(
    x: &CsrMatrix,
    genes: &[(&str, &[String])],
    stats: &ValueStats,
    model_genes: &[String],
    normalize: bool,
    what: &str,
) -> Result<(CsrMatrix, NormalizationReport, GeneOverlap, Option<Rescale>)> {
    let index = genes[0].1;
    check_unique(index, &format!("the {what}"))?;
    let report = check_input(stats, index, normalize, what)?;
    let (names, matched_by) = best_gene_ids(genes, model_genes);
    let (kept, mut overlap) = align_genes(x, names, model_genes)?;
    overlap.matched_by = matched_by;
    let rescale =
        if normalize { Some(Rescale { log_factor: log_factor(&report)?, totals: stats.totals(&report.normalization).map(<[f64]>::to_vec) }) } else { None };
    Ok((kept, report, overlap, rescale))
}

/// How aligned rows are brought to ln(CPM+1): undo the input's log (`log_factor`), then scale each
/// row by its cell's total over all its genes (`totals`, one per row) and take ln(1+x).
#[derive(Debug, Clone, PartialEq)]
pub struct Rescale {
    pub log_factor: Option<f64>,
    pub totals: Option<Vec<f64>>,
}

impl Rescale {
    /// Rescales `x`, whose rows are this rescaling's rows.
    pub fn apply(&self, x: &mut CsrMatrix) {
        rescale_in_place(x, self.log_factor, self.totals.as_deref(), TargetScale::Cpm);
    }

    /// The rescaling of rows `rows` only.
    pub fn select_rows(&self, rows: &[usize]) -> Rescale {
        Rescale { log_factor: self.log_factor, totals: self.totals.as_ref().map(|t| rows.iter().map(|&r| t[r]).collect()) }
    }
}

/// A data set's gene identifiers for X or `.raw` (`.raw` has its names only).
pub(crate) fn gene_ids(adata: &AnnData, use_raw: bool) -> Result<Vec<(&str, &[String])>> {
    Ok(if use_raw { vec![("var index", adata.matrix(true)?.1.as_slice())] } else { adata.gene_ids() })
}

/// The reference's and the query's identifier columns that share the most genes (each side's var
/// index first, which wins ties), and what was shared.
fn shared_genes<'a>(reference: &[(&'a str, &'a [String])], query: &[(&'a str, &'a [String])]) -> (&'a [String], &'a [String], Vec<String>, String, String) {
    let mut best: Option<(&[String], &[String], Vec<String>, String, String)> = None;
    for (k, &(rname, rnames)) in reference.iter().enumerate() {
        if k > 0 && !is_unique(rnames) {
            continue;
        }
        let (qnames, qhow) = best_gene_ids(query, rnames);
        let qset: std::collections::HashSet<&String> = qnames.iter().collect();
        let shared: Vec<String> = rnames.iter().filter(|g| qset.contains(g)).cloned().collect();
        if best.as_ref().is_none_or(|b| shared.len() > b.2.len()) {
            let rhow = if k == 0 {
                format!("var index ({})", GeneIdKind::of(rnames).describe())
            } else {
                format!("var['{rname}'] ({})", GeneIdKind::of(rnames).describe())
            };
            best = Some((rnames, qnames, shared, rhow, qhow));
        }
    }
    best.expect("the var index is always there")
}

fn strings_of(obs: &ObsTable, obs_names: &[String], key: &str, what: &str) -> Result<Vec<String>> {
    let col = obs.get(key)?;
    col.to_strings()
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| {
                SclabelError::labels(format!("cell '{}' (row {i}) has no value in {what} column '{key}'", obs_names.get(i).map(String::as_str).unwrap_or("?")))
                    .in_column(key)
                    .at_cell(obs_names.get(i).map(String::as_str).unwrap_or("?"))
                    .at_row(i)
            })
        })
        .collect()
}

/// Trains on `reference` (labelled, plus any `Unlabeled` cells) and, optionally, a `query` whose
/// cells are all unlabelled. With a query the model's genes are the reference genes the query also
/// has, in the reference's order (as scNym's atlas workflow). Warnings go to the returned list.
pub async fn train_transfer<O: Observer>(
    reference: &AnnData,
    query: Option<&AnnData>,
    options: &TransferOptions,
    device: &Device,
    observer: &mut O,
) -> Result<(ScnymModel, Vec<String>)> {
    transfer(reference, query, options, None, device, observer).await
}

/// As [`train_transfer`], starting from `pretrained`'s weights (scNym's atlas → target path: an
/// atlas model fine-tuned on the atlas's cells as the labelled set and the user's as the
/// unlabelled target). The pretrained architecture is kept; genes and classes are matched by name
/// (see [`crate::scnym::finetune`]), and what could not be carried over is in the warnings.
pub async fn fine_tune<O: Observer>(
    pretrained: &ScnymModel,
    reference: &AnnData,
    query: Option<&AnnData>,
    options: &TransferOptions,
    device: &Device,
    observer: &mut O,
) -> Result<(ScnymModel, Vec<String>)> {
    transfer(reference, query, options, Some(pretrained), device, observer).await
}

/// What the reference's obs say for training: class codes (−1 unlabelled), cells left out, and
/// each cell's domain and split when asked for.
struct Annotations {
    labels: LabelEncoding,
    excluded: Vec<bool>,
    domains: Option<Vec<String>>,
    splits: Option<Vec<Option<Split>>>,
    warnings: Vec<String>,
}

impl Annotations {
    fn of(obs: &ObsTable, obs_names: &[String], options: &TransferOptions) -> Result<Self> {
        let column = obs.get(&options.label_key)?;
        let labels = encode_labels(column, &options.label_key, obs_names, &options.exclude_labels)?;
        check_trainable(&labels, &options.label_key)?;
        let warnings = labels
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n < 2)
            .map(|(k, _)| format!("class '{}' has a single labelled cell; it may land in a held-out split and is hard to learn", labels.class_names[k]))
            .collect();
        let excluded: Vec<bool> = column.to_strings().iter().map(|v| v.as_ref().is_some_and(|v| options.exclude_labels.contains(v))).collect();
        let domains = options.domain_key.as_ref().map(|k| strings_of(obs, obs_names, k, "domain")).transpose()?;
        let splits = match &options.split_key {
            Some(k) => Some(
                strings_of(obs, obs_names, k, "split")?
                    .iter()
                    .enumerate()
                    .map(|(i, s)| match s.as_str() {
                        "train" => Ok(Some(Split::Train)),
                        "test" => Ok(Some(Split::Test)),
                        "val" => Ok(Some(Split::Val)),
                        _ if labels.codes[i] < 0 => Ok(None),
                        other => Err(SclabelError::labels(format!("split column '{k}' has '{other}' at row {i}; use train, test or val"))
                            .in_column(k.as_str())
                            .at_row(i)),
                    })
                    .collect::<Result<_>>()?,
            ),
            None => None,
        };
        Ok(Annotations { labels, excluded, domains, splits, warnings })
    }

    /// Adds the query's `rows` (of its obs) as unlabelled cells: their domains from the same obs
    /// column, or the domain "query" when it has none.
    fn add_query(&mut self, obs: &ObsTable, obs_names: &[String], rows: &[usize], options: &TransferOptions) -> Result<()> {
        self.labels.codes.extend(std::iter::repeat_n(-1, rows.len()));
        self.excluded.extend(std::iter::repeat_n(false, rows.len()));
        if let Some(d) = self.domains.as_mut() {
            let k = options.domain_key.as_ref().expect("domain key");
            match obs.get(k) {
                Ok(_) => {
                    let all = strings_of(obs, obs_names, k, "domain")?;
                    d.extend(rows.iter().map(|&r| all[r].clone()));
                }
                Err(_) => d.extend(std::iter::repeat_n("query".to_string(), rows.len())),
            }
        }
        if let Some(s) = self.splits.as_mut() {
            s.extend(std::iter::repeat_n(None, rows.len()));
        }
        Ok(())
    }

    /// The cells that take part (all but excluded ones: QC failures take part in nothing, not even
    /// as unlabelled cells).
    fn kept(&self) -> Vec<usize> {
        (0..self.labels.codes.len()).filter(|&i| !self.excluded[i]).collect()
    }
}

/// The training genes: `shared` (both sides' genes, in the reference's order), only those of
/// `options.genes` when given.
fn restrict_genes(shared: Vec<String>, options: &TransferOptions, warnings: &mut Vec<String>) -> Result<Vec<String>> {
    let Some(wanted) = &options.genes else { return Ok(shared) };
    let set: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
    let n_shared = shared.len();
    let kept: Vec<String> = shared.into_iter().filter(|g| set.contains(g.as_str())).collect();
    if kept.is_empty() {
        return Err(SclabelError::genes(format!(
            "none of the {} genes in options.genes (e.g. '{}') is among the {n_shared} genes training can use (with a query: those both data sets have)",
            wanted.len(),
            wanted.first().map(String::as_str).unwrap_or("")
        )));
    }
    if kept.len() < set.len() {
        warnings.push(format!("{} of the {} genes in options.genes are in the data; training uses those", kept.len(), set.len()));
    }
    Ok(kept)
}

/// The reference's and the query's genes in common (the reference's order), or an error naming
/// both kinds of identifier when they share none; warnings say how they were matched.
fn common_genes<'a>(
    reference: &[(&'a str, &'a [String])],
    query: &[(&'a str, &'a [String])],
    warnings: &mut Vec<String>,
) -> Result<(&'a [String], &'a [String], Vec<String>)> {
    let (rnames, qnames, shared, rhow, qhow) = shared_genes(reference, query);
    if shared.is_empty() {
        let (r, q) = (reference[0].1, query[0].1);
        return Err(SclabelError::genes(format!(
            "the reference ({}, e.g. '{}') and the query ({}, e.g. '{}') share no gene names; check the species, or name the var column that holds matching identifiers (var_names)",
            GeneIdKind::of(r).describe(),
            r.first().map(String::as_str).unwrap_or(""),
            GeneIdKind::of(q).describe(),
            q.first().map(String::as_str).unwrap_or("")
        )));
    }
    if !rhow.starts_with("var index") || !qhow.starts_with("var index") {
        warnings.push(format!("genes matched by the reference's {rhow} and the query's {qhow}"));
    }
    if shared.len() < 100 {
        warnings.push(format!("the reference and the query share only {} genes", shared.len()));
    }
    Ok((rnames, qnames, shared))
}

/// The query cells that train as the unlabelled set, with a warning when subsampled.
fn query_rows(n: usize, options: &TransferOptions, config: &ScnymConfig, warnings: &mut Vec<String>) -> Vec<usize> {
    let rows = query_subsample(n, options.max_query_cells, config.seed);
    if rows.len() < n {
        warnings.push(format!(
            "the query's {n} cells were subsampled to {} (seeded, uniform; max_query_cells) as the unlabelled training set; predict every cell afterwards",
            rows.len()
        ));
    }
    rows
}

async fn transfer<O: Observer>(
    reference: &AnnData,
    query: Option<&AnnData>,
    options: &TransferOptions,
    pretrained: Option<&ScnymModel>,
    device: &Device,
    observer: &mut O,
) -> Result<(ScnymModel, Vec<String>)> {
    let config = ScnymConfig::from_preset_and_json(&options.preset, options.config.as_ref())?;
    let (rx, rgenes) = reference.matrix(options.use_raw)?;
    check_unique(rgenes, "the reference")?;
    let mut a = Annotations::of(&reference.obs, &reference.obs_names, options)?;
    let mut warnings = std::mem::take(&mut a.warnings);
    // Each side keeps the genes training uses before it is normalised (with each cell's totals over
    // all of its genes), so no whole-matrix copy is made.
    let (x, genes, normalization) = match query {
        None => {
            let stats = reference.value_stats(options.use_raw)?;
            let genes = restrict_genes(rgenes.clone(), options, &mut warnings)?;
            let (rx, rnorm, _) = kept_model_input(rx, &[("var index", rgenes)], &stats, &genes, options.normalize, "reference")?;
            (rx, genes, vec![rnorm])
        }
        Some(q) => {
            let query_raw = options.query_use_raw.unwrap_or(options.use_raw);
            let (qx, qgenes) = q.matrix(query_raw)?;
            check_unique(qgenes, "the query")?;
            let (rids, qids) = (gene_ids(reference, options.use_raw)?, gene_ids(q, query_raw)?);
            let (rnames, qnames, shared) = common_genes(&rids, &qids, &mut warnings)?;
            let genes = restrict_genes(shared, options, &mut warnings)?;
            let (rstats, qstats) = (reference.value_stats(options.use_raw)?, q.value_stats(query_raw)?);
            let (ra, rnorm, _) = kept_model_input(rx, &[("var index", rgenes), ("matched", rnames)], &rstats, &genes, options.normalize, "reference")?;
            let (qa, qnorm, _) = kept_model_input(
                qx,
                &[("var index", qgenes), ("matched", qnames)],
                &qstats,
                &genes,
                options.query_normalize.unwrap_or(options.normalize),
                "query",
            )?;
            let q_rows = query_rows(q.n_obs(), options, &config, &mut warnings);
            let qa = if q_rows.len() < q.n_obs() { qa.select_rows(&q_rows) } else { qa };
            a.add_query(&q.obs, &q.obs_names, &q_rows, options)?;
            crate::memory::reserve(
                &format!("the training matrix ({} reference + {} query cells × {} genes)", ra.n_rows, qa.n_rows, genes.len()),
                (ra.nnz() + qa.nnz()) as u64 * 8 + (ra.n_rows + qa.n_rows + 1) as u64 * 8,
                "train on fewer query cells (max_query_cells) or a smaller reference, or use the native CLI",
            )?;
            (CsrMatrix::vstack(&[&ra, &qa])?, genes, vec![rnorm, qnorm])
        }
    };
    let n_total = x.n_rows;
    let kept = a.kept();
    let x = if kept.len() < n_total { x.select_rows(&kept) } else { x };
    let fitted = Fit { genes, normalization, n_total, kept, annotations: a, warnings };
    fitted.train(&x, options, config, pretrained, device, observer).await
}

/// [`train_transfer`] from `.h5ad` files read a block of cells at a time, never loaded: the
/// reference's training genes (normalised with each cell's totals over all of its genes) are
/// held as compact blocks of rows ([`RowBlocks`]: 6 bytes per stored value, no other copy), the
/// query's seeded subsample as another. Memory is that matrix, one block and the model — what
/// lets a 1M-cell reference over 2,000 genes train in a tab. Everything else (labels, domains,
/// splits, genes, the training itself) is [`train_transfer`]'s, and so is the result: the same
/// model as training on the files loaded (tested).
pub async fn train_transfer_h5ad<O: Observer>(
    reference: &H5adRows,
    query: Option<&H5adRows>,
    options: &TransferOptions,
    device: &Device,
    observer: &mut O,
) -> Result<(ScnymModel, Vec<String>)> {
    let config = ScnymConfig::from_preset_and_json(&options.preset, options.config.as_ref())?;
    check_unique(&reference.var_names, "the reference")?;
    let mut a = Annotations::of(&reference.obs, &reference.obs_names, options)?;
    let mut warnings = std::mem::take(&mut a.warnings);
    let genes = match query {
        None => restrict_genes(reference.var_names.clone(), options, &mut warnings)?,
        Some(q) => {
            check_unique(&q.var_names, "the query")?;
            let (_, _, shared) = common_genes(&reference.gene_ids(), &q.gene_ids(), &mut warnings)?;
            restrict_genes(shared, options, &mut warnings)?
        }
    };
    // The reference's input is checked first, as train_transfer does.
    let r_input = StreamedInput::for_genes(reference, &genes, options.normalize, "reference")?;
    let q_input = query.map(|q| StreamedInput::for_genes(q, &genes, options.query_normalize.unwrap_or(options.normalize), "query")).transpose()?;
    let mut normalization = vec![r_input.normalization.clone()];
    let n_reference = reference.n_rows;
    let mut x = RowBlocks::new(genes.len());
    let what = format!("the training matrix ({n_reference} reference cells × {} genes)", genes.len());
    let advice = "train on fewer genes (options.genes) or a subsample of the reference, or use the native CLI";
    r_input.read_selected_into(reference, &(0..n_reference).filter(|&i| !a.excluded[i]).collect::<Vec<_>>(), &mut x, &what, advice)?;
    if let (Some(q), Some(input)) = (query, q_input) {
        let q_rows = query_rows(q.n_rows, options, &config, &mut warnings);
        input.read_selected_into(q, &q_rows, &mut x, &what, advice)?;
        a.add_query(&q.obs, &q.obs_names, &q_rows, options)?;
        normalization.push(input.normalization);
    }
    let kept = a.kept();
    let fitted = Fit { genes, normalization, n_total: a.labels.codes.len(), kept, annotations: a, warnings };
    fitted.train(&x, options, config, None, device, observer).await
}

/// A training run's inputs past the matrix: which cells of the stacked reference + query take
/// part, their annotations, the genes and how each side was normalised.
struct Fit {
    genes: Vec<String>,
    normalization: Vec<NormalizationReport>,
    /// Cells before exclusions, and the ones kept (the rows of the matrix trained on).
    n_total: usize,
    kept: Vec<usize>,
    annotations: Annotations,
    warnings: Vec<String>,
}

impl Fit {
    async fn train<O: Observer>(
        self,
        x: &dyn RowSource,
        options: &TransferOptions,
        config: ScnymConfig,
        pretrained: Option<&ScnymModel>,
        device: &Device,
        observer: &mut O,
    ) -> Result<(ScnymModel, Vec<String>)> {
        let Fit { genes, normalization, n_total, kept, annotations: a, mut warnings } = self;
        let mut labels = a.labels;
        let every = kept.len() == n_total;
        let codes: Vec<i32> = if every { std::mem::take(&mut labels.codes) } else { kept.iter().map(|&i| labels.codes[i]).collect() };
        let domain_strings = a.domains.map(|d| if every { d } else { kept.iter().map(|&i| d[i].clone()).collect() });
        let splits = a.splits.map(|s| if every { s } else { kept.iter().map(|&i| s[i]).collect::<Vec<_>>() });
        let (domain_names, domains) = match domain_strings {
            Some(d) => {
                let (names, codes) = sorted_codes(&d);
                (names, codes.into_iter().map(|c| c as u32).collect::<Vec<_>>())
            }
            None => {
                let any_u = codes.iter().any(|&c| c < 0);
                let names = if any_u { vec!["labeled".to_string(), "unlabeled".to_string()] } else { vec!["labeled".to_string()] };
                (names, codes.iter().map(|&c| u32::from(c < 0)).collect())
            }
        };
        let data =
            TrainingData { x, labels: &codes, n_classes: labels.n_classes(), domains: &domains, n_domains: domain_names.len(), splits: splits.as_deref() };
        let init = match pretrained {
            Some(m) => {
                let p = pretrained_for(m, &genes, &labels.class_names, config.seed).await?;
                warnings.extend(p.report.warnings());
                if ArchSpec::new(p.arch.n_genes, p.arch.n_classes, &config.model_kwargs) != p.arch {
                    warnings.push("fine-tuning keeps the pretrained model's architecture; the config's model_kwargs are ignored".into());
                }
                Some(p)
            }
            None => None,
        };
        let trained = train(&data, &config, init.as_ref(), device, observer).await?;
        let mut details = std::collections::BTreeMap::new();
        details.insert("label_key".into(), options.label_key.clone());
        if let Some(k) = &options.domain_key {
            details.insert("domain_key".into(), k.clone());
        }
        details.insert("domains".into(), serde_json::to_string(&domain_names).expect("json"));
        details.insert("preset".into(), options.preset.clone());
        details.insert("input_normalization".into(), serde_json::to_string(&normalization).expect("json"));
        details.insert("n_cells".into(), n_total.to_string());
        if let (Some(m), Some(p)) = (pretrained, &init) {
            let from = m.provenance.details.get("atlas").map(|a| format!("atlas {a}")).unwrap_or_else(|| m.provenance.created_by.clone());
            details.insert("fine_tuned_from".into(), from);
            details.insert("fine_tune_init".into(), serde_json::to_string(&p.report).expect("json"));
        }
        let model = ScnymModel {
            arch: trained.arch,
            net: trained.net,
            bn: trained.bn,
            genes,
            classes: labels.class_names.clone(),
            input: InputSpec::default(),
            config: Some(config),
            metrics: Some(trained.metrics),
            provenance: Provenance {
                created_by: format!("sclabel {}", env!("CARGO_PKG_VERSION")),
                source: if pretrained.is_some() { "fine-tuned".into() } else { "trained".into() },
                details,
            },
        };
        Ok((model, warnings))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PredictReport {
    pub overlap: GeneOverlap,
    pub normalization: NormalizationReport,
    pub warnings: Vec<String>,
}

/// `adata`'s matrix as `model` takes it: ln(CPM+1) (checked, or converted when `normalize`),
/// columns aligned to the model's genes (missing genes are zero).
pub fn model_input(model: &ScnymModel, adata: &AnnData, normalize: bool, use_raw: bool) -> Result<(CsrMatrix, NormalizationReport, GeneOverlap)> {
    let (x, _) = adata.matrix(use_raw)?;
    kept_model_input(x, &gene_ids(adata, use_raw)?, &*adata.value_stats(use_raw)?, &model.genes, normalize, "data")
}

/// The query rows that train: all of them, or a seeded uniform subsample of `max` in row order.
fn query_subsample(n: usize, max: Option<usize>, seed: u64) -> Vec<usize> {
    match max {
        Some(m) if m < n => {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5_EED0_F0E7);
            let mut rows: Vec<usize> = (0..n).collect();
            let mut picked = rows.partial_shuffle(&mut rng, m).0.to_vec();
            picked.sort_unstable();
            picked
        }
        _ => (0..n).collect(),
    }
}

/// The warning a low gene overlap earns.
fn overlap_warnings(overlap: &GeneOverlap) -> Vec<String> {
    overlap.low_warning("predictions may be unreliable (missing genes are set to 0)").into_iter().collect()
}

/// Cells whose model input is all zeros (no value in any of the model's genes): counted, with a
/// few names, so a prediction never labels empty cells without a word.
#[derive(Default)]
struct EmptyCells {
    count: usize,
    examples: Vec<String>,
}

impl EmptyCells {
    /// Notes the empty rows of `x`, whose first row is cell `start` of `names`.
    fn add(&mut self, x: &CsrMatrix, start: usize, names: &[String]) {
        for (i, w) in x.indptr.windows(2).enumerate() {
            if w[0] == w[1] {
                self.count += 1;
                if self.examples.len() < 3 {
                    self.examples.push(names.get(start + i).cloned().unwrap_or_else(|| format!("row {}", start + i)));
                }
            }
        }
    }

    fn warnings(&self, n_cells: usize) -> Vec<String> {
        if self.count == 0 {
            return Vec::new();
        }
        vec![format!(
            "{} of {n_cells} cells have no value in any of the model's genes (e.g. {}): their input is all zeros, so their label is only the model's guess for an empty cell; filter such cells (e.g. sc.pp.filter_cells) or check the gene overlap",
            self.count,
            self.examples.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
        )]
    }
}

/// Aligns `adata` to the model's genes (missing genes are zero, with a warning when few are
/// shared), brings it to ln(CPM+1) and predicts.
pub async fn predict_adata<O: Observer>(
    model: &ScnymModel,
    adata: &AnnData,
    options: &PredictOptions,
    device: &Device,
    observer: &mut O,
) -> Result<(Prediction, PredictReport)> {
    let prepared = prepare_prediction(model, adata, options)?;
    let report = prepared.report.clone();
    Ok((predict(model, &prepared.into_model_input(), options, device, observer).await?, report))
}

/// The part of [`predict_adata`] before the network: `adata`'s rows aligned to `model`'s genes,
/// the rescaling still to do on them (row by row), and what the prediction reports about them.
/// Each row is then rescaled and predicted on its own, so a caller may split the rows (the
/// browser's parallel workers: [`PreparedInput::select_rows`], `PredictionParts::add_outputs`)
/// and get the same prediction.
pub fn prepare_prediction(model: &ScnymModel, adata: &AnnData, options: &PredictOptions) -> Result<PreparedInput> {
    if options.var_names.is_some() {
        return Err(SclabelError::InvalidOption {
            option: "var_names".into(),
            reason: "applies to an .h5ad predicted without loading it; a loaded data set takes its gene-name column when it is loaded (varNames)".into(),
        });
    }
    let (x, _) = adata.matrix(options.use_raw)?;
    let (x, normalization, overlap, rescale) =
        aligned_model_input(x, &gene_ids(adata, options.use_raw)?, &*adata.value_stats(options.use_raw)?, &model.genes, options.normalize, "data")?;
    let mut empty = EmptyCells::default();
    empty.add(&x, 0, &adata.obs_names);
    let mut warnings = overlap_warnings(&overlap);
    warnings.extend(empty.warnings(x.n_rows));
    Ok(PreparedInput { x, rescale, report: PredictReport { overlap, normalization, warnings } })
}

/// A data set's rows as a model takes them, but for the rescaling (see [`prepare_prediction`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedInput {
    /// The model's genes, values as stored.
    pub x: CsrMatrix,
    /// To ln(CPM+1), when normalising.
    pub rescale: Option<Rescale>,
    pub report: PredictReport,
}

impl PreparedInput {
    /// Rows `rows` (their x and rescaling; the report stays the whole's).
    pub fn select_rows(&self, rows: &[usize]) -> PreparedInput {
        PreparedInput { x: self.x.select_rows(rows), rescale: self.rescale.as_ref().map(|r| r.select_rows(rows)), report: self.report.clone() }
    }

    /// The model's input: rows rescaled.
    pub fn into_model_input(self) -> CsrMatrix {
        let mut x = self.x;
        if let Some(r) = &self.rescale {
            r.apply(&mut x);
        }
        x
    }
}

/// `source`'s rows as [`predict_h5ad_rows`] reads them under `options`: X or `.raw` (`use_raw`),
/// gene names from the var column `var_names` when given.
pub fn open_prediction_rows<S: Source + Send + Sync + 'static>(source: S, file_name: &str, options: &PredictOptions) -> Result<H5adRows> {
    let mut rows = open_h5ad_rows(source, file_name, options.use_raw)?;
    if let Some(column) = &options.var_names {
        rows.use_var_names_from(column)?;
    }
    Ok(rows)
}

/// [`predict_adata`] over an `.h5ad` read a block of cells at a time, never whole (`rows` opened
/// by [`open_prediction_rows`] with the same options): one pass over
/// the values for what normalisation needs (the scale, each cell's totals over all genes), then
/// one over the model's genes, block by block. Memory is the model, one block of kept genes and
/// the per-cell outputs.
pub async fn predict_h5ad_rows<O: Observer>(
    model: &ScnymModel,
    rows: &H5adRows,
    options: &PredictOptions,
    device: &Device,
    observer: &mut O,
) -> Result<(Prediction, PredictReport)> {
    let input = StreamedInput::new(model, rows, options.normalize)?;
    let mut parts = PredictionParts::new(model, options, rows.n_rows)?;
    let block = rows.block_rows();
    let (mut start, mut empty) = (0, EmptyCells::default());
    while start < rows.n_rows {
        let end = (start + block).min(rows.n_rows);
        let x = input.read(rows, start..end)?;
        empty.add(&x, start, &rows.obs_names);
        parts.add(model, &x, device, observer).await?;
        start = end;
    }
    let mut warnings = overlap_warnings(&input.overlap);
    warnings.extend(empty.warnings(rows.n_rows));
    Ok((parts.finish(model)?, PredictReport { overlap: input.overlap, normalization: input.normalization, warnings }))
}

/// A model's input read from an `.h5ad` a block of cells at a time: genes matched to the model by
/// whichever var column shares the most, only those kept, and ln(CPM+1) from each cell's totals
/// over *all* genes (one pass over the values first), so a block equals the same rows of
/// [`model_input`] on the whole file.
pub struct StreamedInput {
    keep: ColumnMap,
    /// `Some(log factor)` when normalising (see [`rescale_in_place`]).
    factor: Option<Option<f64>>,
    totals: Option<Vec<f64>>,
    /// The scale a block is brought to: ln(CPM+1) for scNym, ln(CP10k+1) for CellTypist.
    target: TargetScale,
    pub overlap: GeneOverlap,
    pub normalization: NormalizationReport,
}

impl StreamedInput {
    pub fn new(model: &ScnymModel, rows: &H5adRows, normalize: bool) -> Result<Self> {
        Self::for_genes(rows, &model.genes, normalize, "data")
    }

    /// `rows` as an input over `genes` (matched by whichever of its identifier columns shares
    /// most), ln(CPM+1) (checked, or converted when `normalize`); `what` names it in messages.
    pub fn for_genes(rows: &H5adRows, genes: &[String], normalize: bool, what: &str) -> Result<Self> {
        Self::for_genes_at(rows, genes, normalize, what, TargetScale::Cpm)
    }

    /// As [`StreamedInput::for_genes`], brought to ln(`target`+1) when normalising.
    pub fn for_genes_at(rows: &H5adRows, genes: &[String], normalize: bool, what: &str, target: TargetScale) -> Result<Self> {
        let (names, matched_by) = best_gene_ids(&rows.gene_ids(), genes);
        let (map, mut overlap) = gene_map(names, genes)?;
        overlap.matched_by = matched_by;
        let keep = ColumnMap::new(map, genes.len())?;
        let stats = rows.value_stats()?;
        let normalization = check_input(&stats, &rows.var_names, normalize, what)?;
        let factor = if normalize { Some(log_factor(&normalization)?) } else { None };
        let totals = stats.totals(&normalization.normalization).map(<[f64]>::to_vec);
        Ok(Self { keep, factor, totals, target, overlap, normalization })
    }

    /// Which of the genes the file has (the others are columns no source column fills).
    pub fn present(&self) -> Vec<bool> {
        self.keep.filled()
    }

    /// Rows `range` of the file as the model's input.
    pub fn read(&self, rows: &H5adRows, range: std::ops::Range<usize>) -> Result<CsrMatrix> {
        let mut x = rows.read_rows(range.clone(), &self.keep)?;
        self.rescale(&mut x, range.start);
        Ok(x)
    }

    /// ln(target+1) of a block read from row `start`, when normalising.
    fn rescale(&self, x: &mut CsrMatrix, start: usize) {
        if let Some(f) = self.factor {
            rescale_block_in_place(x, f, self.totals.as_deref(), start, self.target);
        }
    }

    /// Only `wanted` rows of the file (ascending), read block by block: memory is one block and
    /// the rows kept.
    pub fn read_selected(&self, rows: &H5adRows, wanted: &[usize]) -> Result<CsrMatrix> {
        let mut parts = Vec::new();
        rows.for_blocks_of(wanted, &self.keep, |start, mut x, local| {
            self.rescale(&mut x, start);
            parts.push(x.select_rows(local));
            Ok(())
        })?;
        if parts.is_empty() {
            return CsrMatrix::new(0, self.keep.n_kept, vec![0], Vec::new(), Vec::new());
        }
        CsrMatrix::vstack(&parts.iter().collect::<Vec<_>>())
    }

    /// As [`StreamedInput::read_selected`], onto `out` as blocks of rows, each checked against the
    /// memory budget first (`what` and `advice` name it in a refusal).
    pub fn read_selected_into(&self, rows: &H5adRows, wanted: &[usize], out: &mut RowBlocks, what: &str, advice: &str) -> Result<()> {
        let per_value = RowBlocks::bytes_per_value(self.keep.n_kept);
        rows.for_blocks_of(wanted, &self.keep, |start, mut x, local| {
            self.rescale(&mut x, start);
            let part = if local.len() == x.n_rows { x } else { x.select_rows(local) };
            crate::memory::reserve(what, part.nnz() as u64 * per_value + part.n_rows as u64 * 4, advice)?;
            out.push(&part)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::query_subsample;

    #[test]
    fn query_subsample_is_seeded_sorted_and_distinct() {
        let a = query_subsample(1000, Some(100), 7);
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && *a.last().unwrap() < 1000);
        assert_eq!(a, query_subsample(1000, Some(100), 7));
        assert_ne!(a, query_subsample(1000, Some(100), 8));
        assert_eq!(query_subsample(50, Some(100), 7), (0..50).collect::<Vec<_>>());
        assert_eq!(query_subsample(50, None, 7).len(), 50);
    }
}
