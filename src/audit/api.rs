//! The annotation audit on an AnnData: training dynamics on the given labels, data-driven cutoffs
//! from a run with simulated label noise, categories, re-annotation of untrusted cells, dynamics
//! against a second label column, and trainability gene scores.
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::audit::categories::{auroc, categorize, flip_labels, percentile, trusted, Category, Cutoffs, EasyThresholds};
use crate::audit::dynamics::{follow_training_dynamics, Dynamics};
use crate::audit::genes::{gene_scores, GeneScoreOptions, GeneScores};
use crate::audit::graph::{make_conf_graph, ConfGraph, ConfGraphOptions};
use crate::audit::pca::{pca, PcaOptions};
use crate::backend::{BackendInfo, ComputeDevice};
use crate::data::anndata::{AnnData, ObsTable};
use crate::data::hvg::{highly_variable_genes, highly_variable_genes_of, HvgFlavor, HvgOptions, RowPasses};
use crate::data::labels::{check_trainable, encode_labels, LabelEncoding};
use crate::data::matrix::CsrMatrix;
use crate::data::normalize::{detect_from_stats, log_factor, rescale_block_in_place, to_log_normalized_with, Normalization, NormalizationReport, TargetScale};
use crate::error::{Result, SclabelError};
use crate::io::h5ad::{ColumnMap, H5adRows};
use crate::io::h5ad_export::{H5adAdditions, ObsValues};
use crate::train::classifier::{predict_proba, train_mlp, EpochStats, TrainOptions};
use crate::train::progress::Observer;

/// How the trusted / untrusted cutoffs are found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CutoffRule {
    /// Annotatability's `find_cutoff_paramter`: flip `fraction` of the labels, train a fresh
    /// network on them, take the `percentile` of the flipped cells' confidence and variability.
    /// Defaults are the PBMC notebook's (0.1, 25); the package's function defaults are (0.05, 90).
    Simulated { fraction: f64, percentile: f64 },
    /// Given thresholds.
    Fixed { confidence: f32, variability: f32 },
}

impl CutoffRule {
    pub const DEFAULT_FRACTION: f64 = 0.1;
    pub const DEFAULT_PERCENTILE: f64 = 25.0;
}

impl Default for CutoffRule {
    fn default() -> Self {
        CutoffRule::Simulated { fraction: Self::DEFAULT_FRACTION, percentile: Self::DEFAULT_PERCENTILE }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct AuditOptions {
    /// obs column with the annotations to audit.
    pub label_key: String,
    /// Optional second label column recorded alongside (`follow_train_dyn_two_lables`): the
    /// network trains on `label_key` and the probability of this column's label is followed too.
    /// Its classes must be classes of `label_key`.
    pub second_label_key: Option<String>,
    /// Cells with these labels are not audited (e.g. `unlabeled_QCfail`); `Unlabeled` never is.
    pub exclude_labels: Vec<String>,
    pub use_raw: bool,
    /// Annotatability expects ln(CP10k + 1).
    pub scale: TargetScale,
    /// Genes the networks train on: highly variable genes of the audited cells, selected after
    /// normalising over all genes (Annotatability's notebooks: normalise → log → top 2000 HVGs →
    /// train). `None`, or data with no more genes than `n_top_genes`: every gene.
    pub hvg: Option<HvgOptions>,
    /// Training of every network (dynamics, cutoff run, re-annotation). Defaults are
    /// Annotatability's: SGD lr 1e-3 momentum 0.9, balanced sampling, batch 256, 3 layers,
    /// 50 epochs (the package's README and cutoff function; `follow_training_dyn` defaults to 100).
    pub train: TrainOptions,
    pub cutoffs: CutoffRule,
    pub easy: EasyThresholds,
    /// Re-annotate untrusted cells with a network trained on the trusted ones.
    pub reannotate: bool,
    /// Trainability gene scores (`None`: skip).
    pub gene_scores: Option<GeneScoreOptions>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            label_key: "cell_type".into(),
            second_label_key: None,
            exclude_labels: Vec::new(),
            use_raw: false,
            scale: TargetScale::Cp10k,
            hvg: Some(HvgOptions::default()),
            train: TrainOptions::default(),
            cutoffs: CutoffRule::default(),
            easy: EasyThresholds::default(),
            reannotate: true,
            gene_scores: Some(GeneScoreOptions::default()),
        }
    }
}

/// The simulated-noise run behind data-driven cutoffs.
impl AuditOptions {
    /// Ranges checked before any work, naming the option: a cutoff of 2 or NaN would otherwise
    /// make every cell hard-to-learn, and a negative min_counts keep every gene, silently.
    pub fn validate(&self) -> Result<()> {
        let bad = |option: &str, reason: String| Err(SclabelError::InvalidOption { option: option.into(), reason });
        match self.cutoffs {
            CutoffRule::Fixed { confidence, variability } => {
                if !(0.0..=1.0).contains(&confidence) {
                    return bad("cutoffs.confidence", format!("must be in [0, 1] (a probability), got {confidence}"));
                }
                if !(0.0..=0.5).contains(&variability) {
                    return bad("cutoffs.variability", format!("must be in [0, 0.5] (the standard deviation of a probability), got {variability}"));
                }
            }
            CutoffRule::Simulated { fraction, percentile } => {
                if !(fraction > 0.0 && fraction < 1.0) {
                    return bad("cutoffs.fraction", format!("must be in (0, 1), got {fraction}"));
                }
                if !(0.0..=100.0).contains(&percentile) {
                    return bad("cutoffs.percentile", format!("must be in [0, 100], got {percentile}"));
                }
            }
        }
        if let Some(g) = &self.gene_scores {
            if !(g.min_counts >= 0.0 && g.min_counts.is_finite()) {
                return bad("gene_scores.min_counts", format!("must be a finite number ≥ 0, got {}", g.min_counts));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseRun {
    /// Positions (into `AuditReport::cells`) of the cells whose label was flipped.
    pub flipped: Vec<usize>,
    /// Confidence and variability against the flipped labels.
    pub dynamics: Dynamics,
    /// How well 1 − confidence finds the flipped cells (a check that the audit works on this data).
    pub auroc: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub backend: BackendInfo,
    pub normalization: NormalizationReport,
    /// The genes the networks trained on, in the data's order (the matrix's columns after gene
    /// selection), and how they were chosen.
    pub genes: Vec<String>,
    pub gene_selection: String,
    pub class_names: Vec<String>,
    /// Cells of the audited data set (what `cells` index into).
    pub n_obs: usize,
    /// Rows of the AnnData that were audited (cells with a label not excluded), in order; every
    /// per-cell vector below is aligned with it.
    pub cells: Vec<usize>,
    /// Annotated label of each audited cell.
    pub labels: Vec<String>,
    /// `conf` / `var` against `label_key`.
    pub dynamics: Dynamics,
    /// `conf` / `var` against `second_label_key`, when given.
    pub second: Option<Dynamics>,
    pub cutoffs: Cutoffs,
    pub noise_run: Option<NoiseRun>,
    pub trusted: Vec<bool>,
    pub categories: Vec<Category>,
    /// Given label for trusted cells, the re-annotation network's label for untrusted ones.
    pub corrected_labels: Option<Vec<String>>,
    pub gene_scores: Option<GeneScores>,
    pub history: Vec<EpochStats>,
    /// Which executor trained the networks (see `backend::Executor`).
    pub executor: crate::backend::Executor,
    pub options: AuditOptions,
}

/// The names Annotatability gives its outputs in an AnnData's obs (the JS result and the CLI's CSV
/// call the category `category`).
pub mod slots {
    pub const CONFIDENCE: &str = "conf";
    pub const VARIABILITY: &str = "var";
    pub const CATEGORY: &str = "Annotation";
    pub const CORRECTED_LABEL: &str = "corrected_label";
}

impl AuditReport {
    /// What Annotatability writes into the audited AnnData's obs (`n_obs` cells): `conf`, `var`,
    /// `Annotation` and `corrected_label`; cells the audit left out are NaN / missing.
    pub fn anndata_additions(&self, n_obs: usize) -> Result<H5adAdditions> {
        audit_additions(
            n_obs,
            Some(self.n_obs),
            &self.cells,
            &self.dynamics.confidence,
            &self.dynamics.variability,
            &self.categories,
            self.corrected_labels.as_deref(),
        )
    }
}

/// [`AuditReport::anndata_additions`] from its parts (an audit handed back by JS), checked: an
/// audit of a data set of another size (`audited_n_obs`) is refused, not written misaligned; every
/// per-cell part has one value per audited cell, and each audited cell is a row of the file.
pub fn audit_additions(
    n_obs: usize,
    audited_n_obs: Option<usize>,
    cells: &[usize],
    conf: &[f32],
    var: &[f32],
    categories: &[Category],
    corrected: Option<&[String]>,
) -> Result<H5adAdditions> {
    if let Some(audited) = audited_n_obs.filter(|&m| m != n_obs) {
        return Err(SclabelError::InvalidOption { option: "audit".into(), reason: format!("audits a data set of {audited} cells, not this one of {n_obs}") });
    }
    let n = cells.len();
    let lengths = [("conf", conf.len()), ("var", var.len()), ("category", categories.len()), ("corrected_label", corrected.map_or(n, <[String]>::len))];
    if let Some((what, len)) = lengths.into_iter().find(|&(_, len)| len != n) {
        return Err(SclabelError::InvalidOption { option: format!("audit.{what}"), reason: format!("has {len} values for {n} audited cells") });
    }
    if let Some(&row) = cells.iter().find(|&&c| c >= n_obs) {
        return Err(SclabelError::InvalidOption {
            option: "audit.cells".into(),
            reason: format!("row {row} is past the file's {n_obs} cells: an audit of another data set?"),
        });
    }
    let spread_f32 = |values: &[f32]| {
        let mut out = vec![f32::NAN; n_obs];
        cells.iter().zip(values).for_each(|(&c, &v)| out[c] = v);
        ObsValues::F32(out)
    };
    let spread = |values: &mut dyn Iterator<Item = String>| {
        let mut out = vec![None; n_obs];
        cells.iter().zip(values).for_each(|(&c, v)| out[c] = Some(v));
        ObsValues::Categorical(out)
    };
    let mut obs = vec![
        (slots::CONFIDENCE.to_string(), spread_f32(conf)),
        (slots::VARIABILITY.to_string(), spread_f32(var)),
        (slots::CATEGORY.to_string(), spread(&mut categories.iter().map(|c| c.as_str().to_string()))),
    ];
    if let Some(corrected) = corrected {
        obs.push((slots::CORRECTED_LABEL.to_string(), spread(&mut corrected.iter().cloned())));
    }
    Ok(H5adAdditions { obs, obsm: Vec::new() })
}

/// Seeds of the separate networks, derived from the user's seed so one seed fixes the run.
fn derived(options: &TrainOptions, stream: u64) -> TrainOptions {
    TrainOptions { seed: options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(stream), ..options.clone() }
}

pub async fn audit_adata<O: Observer>(adata: &AnnData, options: &AuditOptions, device: &ComputeDevice, observer: &mut O) -> Result<AuditReport> {
    options.validate()?;
    let (source_x, all_genes) = adata.matrix(options.use_raw)?;
    let (x, normalization) = to_log_normalized_with(source_x, all_genes, &*adata.value_stats(options.use_raw)?, options.scale)?;
    let (labels, cells) = audit_labels(&adata.obs, &adata.obs_names, options)?;
    let (x, genes, gene_selection) = select_genes(&adata.obs, &adata.obs_names, source_x, x, all_genes, &normalization, &cells, options)?;
    let prepared = Prepared { x, genes, gene_selection, normalization, labels, cells };
    audit_prepared(prepared, &adata.obs, &adata.obs_names, options, device, observer).await
}

/// [`audit_adata`] on an `.h5ad` read a block of cells at a time (`options.use_raw` is chosen when
/// `rows` is opened), never whole: one pass over the values for the scale and each cell's totals,
/// one for the highly variable genes (one more per batch for seurat_v3), and one that keeps the
/// audited genes' ln(CP10k+1) — the only matrix held. The same report as auditing the file loaded
/// whole (tested): the same values, summed in the same order.
pub async fn audit_h5ad_rows<O: Observer>(rows: &H5adRows, options: &AuditOptions, device: &ComputeDevice, observer: &mut O) -> Result<AuditReport> {
    options.validate()?;
    let stats = rows.value_stats()?;
    let normalization = detect_from_stats(&stats, &rows.var_names)?;
    let factor = log_factor(&normalization)?;
    let totals = stats.totals(&normalization.normalization);
    let (labels, cells) = audit_labels(&rows.obs, &rows.obs_names, options)?;
    let all = rows.n_cols;
    let (selected, gene_selection) = match hvg_plan(&rows.obs, &rows.obs_names, all, &normalization, &cells, options)? {
        HvgPlan::All(sentence) => (None, sentence),
        HvgPlan::Select { hvg, batches, on, per_batch } => {
            // seurat on ln(CP10k+1) of whole cells, seurat_v3 on the counts as stored.
            let scale = (hvg.flavor == HvgFlavor::Seurat).then_some((factor, totals, options.scale));
            let mut passes = FileRows { rows, keep: ColumnMap::all(all), scale };
            let selected = highly_variable_genes_of(&mut passes, &cells, batches.as_deref(), hvg)?.selected;
            let sentence = selection_sentence(selected.len(), all, &on, &per_batch, cells.len());
            (Some(selected), sentence)
        }
    };
    let (keep, genes) = match &selected {
        Some(sel) => (ColumnMap::keeping(all, sel)?, sel.iter().map(|&j| rows.var_names[j].clone()).collect()),
        None => (ColumnMap::all(all), rows.var_names.clone()),
    };
    let x = rows.read_kept(
        &keep,
        &format!("the {} audited genes of {} cells", keep.n_kept, rows.n_rows),
        "select fewer genes (hvg.n_top_genes) or audit fewer cells",
        |start, x| rescale_block_in_place(x, factor, totals, start, options.scale),
    )?;
    let prepared = Prepared { x, genes, gene_selection, normalization, labels, cells };
    audit_prepared(prepared, &rows.obs, &rows.obs_names, options, device, observer).await
}

/// A file's cells visited in passes for gene selection: the genes `keep` keeps, rescaled to
/// ln(target+1) with whole-cell totals when `scale` is given.
struct FileRows<'a> {
    rows: &'a H5adRows,
    keep: ColumnMap,
    scale: Option<(Option<f64>, Option<&'a [f64]>, TargetScale)>,
}

impl RowPasses for FileRows<'_> {
    fn n_rows(&self) -> usize {
        self.rows.n_rows
    }
    fn n_cols(&self) -> usize {
        self.keep.n_kept
    }
    fn pass(&mut self, wanted: &[usize], visit: &mut dyn FnMut(usize, &[u32], &[f32])) -> Result<()> {
        self.rows.for_blocks_of(wanted, &self.keep, |start, mut x, local| {
            if let Some((factor, totals, target)) = self.scale {
                rescale_block_in_place(&mut x, factor, totals, start, target);
            }
            for &i in local {
                let (idx, val) = x.row(i);
                visit(start + i, idx, val);
            }
            Ok(())
        })
    }
}

/// The labels audited and the cells that carry one (ascending).
fn audit_labels(obs: &ObsTable, obs_names: &[String], options: &AuditOptions) -> Result<(LabelEncoding, Vec<usize>)> {
    let labels = encode_labels(obs.get(&options.label_key)?, &options.label_key, obs_names, &options.exclude_labels)?;
    check_trainable(&labels, &options.label_key)?;
    let cells: Vec<usize> = (0..labels.codes.len()).filter(|&r| labels.codes[r] >= 0).collect();
    Ok((labels, cells))
}

/// What the audit trains on, however the file was read.
struct Prepared {
    /// ln(target+1) over the audited genes, every cell.
    x: CsrMatrix,
    genes: Vec<String>,
    gene_selection: String,
    normalization: NormalizationReport,
    labels: LabelEncoding,
    /// Cells with a label (ascending).
    cells: Vec<usize>,
}

async fn audit_prepared<O: Observer>(
    prepared: Prepared,
    obs: &ObsTable,
    obs_names: &[String],
    options: &AuditOptions,
    device: &ComputeDevice,
    observer: &mut O,
) -> Result<AuditReport> {
    let Prepared { x, genes, gene_selection, normalization, labels, cells } = prepared;
    let n_classes = labels.n_classes();
    let var_names = &genes;

    // Second label column, coded in the first column's classes.
    let second_codes = match &options.second_label_key {
        Some(key) => {
            let values = obs.get(key)?.to_strings();
            let mut codes = vec![-1i32; x.n_rows];
            for &r in &cells {
                let v = values[r].as_deref().ok_or_else(|| {
                    SclabelError::labels(format!("obs '{key}' has no value for cell '{}'", obs_names[r]))
                        .in_column(key.as_str())
                        .at_cell(&obs_names[r])
                        .at_row(r)
                })?;
                let k = labels.class_names.iter().position(|c| c == v).ok_or_else(|| {
                    SclabelError::labels(format!(
                        "obs '{key}': cell '{}' has label '{v}', which is not a class of '{}' ({})",
                        obs_names[r],
                        options.label_key,
                        labels.class_names.join(", ")
                    ))
                })?;
                codes[r] = k as i32;
            }
            Some(codes)
        }
        None => None,
    };

    let mut recorded: Vec<&[i32]> = vec![&labels.codes];
    if let Some(s) = &second_codes {
        recorded.push(s);
    }
    let main = follow_training_dynamics(&x, &labels.codes, n_classes, &cells, &recorded, &options.train, &device.device, observer).await?;
    let mut dynamics = main.dynamics.into_iter();
    let (dynamics, second) = (dynamics.next().expect("one recorded column"), dynamics.next());

    let (cutoffs, noise_run) = match options.cutoffs {
        CutoffRule::Fixed { confidence, variability } => (Cutoffs { confidence, variability }, None),
        CutoffRule::Simulated { fraction, percentile: q } => {
            let mut rng = StdRng::seed_from_u64(derived(&options.train, 1).seed);
            let (noisy, flipped_rows) = flip_labels(&labels.codes, &cells, n_classes, fraction, &mut rng)?;
            if flipped_rows.is_empty() {
                return Err(SclabelError::InvalidOption {
                    option: "cutoffs.fraction".into(),
                    reason: format!("flipping {fraction} of {} cells flipped none; use a larger fraction", cells.len()),
                });
            }
            let run = follow_training_dynamics(&x, &noisy, n_classes, &cells, &[&noisy], &derived(&options.train, 2), &device.device, observer).await?;
            let d = run.dynamics.into_iter().next().expect("one recorded column");
            let is_flipped = flag(&cells, &flipped_rows);
            let flipped: Vec<usize> = (0..cells.len()).filter(|&k| is_flipped[k]).collect();
            let pick = |v: &[f32]| flipped.iter().map(|&k| v[k]).collect::<Vec<f32>>();
            let cutoffs = Cutoffs { confidence: percentile(&pick(&d.confidence), q)?, variability: percentile(&pick(&d.variability), q)? };
            let score: Vec<f64> = d.confidence.iter().map(|&c| 1.0 - c as f64).collect();
            let auroc = auroc(&score, &is_flipped);
            (cutoffs, Some(NoiseRun { flipped, dynamics: d, auroc }))
        }
    };

    let trusted = trusted(&dynamics.confidence, &dynamics.variability, cutoffs);
    let categories = categorize(&dynamics.confidence, &dynamics.variability, &trusted, options.easy);
    let label_names: Vec<String> = cells.iter().map(|&r| labels.class_names[labels.codes[r] as usize].clone()).collect();

    let corrected_labels = if options.reannotate {
        Some(reannotate(&x, &labels.codes, n_classes, &cells, &trusted, &labels.class_names, &derived(&options.train, 3), device, observer).await?)
    } else {
        None
    };
    let gene_scores = match &options.gene_scores {
        Some(o) => Some(gene_scores(&x.select_rows(&cells), var_names, &dynamics.confidence, o)?),
        None => None,
    };
    Ok(AuditReport {
        backend: device.info.clone(),
        normalization,
        genes,
        gene_selection,
        class_names: labels.class_names,
        n_obs: x.n_rows,
        cells,
        labels: label_names,
        dynamics,
        second,
        cutoffs,
        noise_run,
        trusted,
        categories,
        corrected_labels,
        gene_scores,
        history: main.history,
        executor: main.executor,
        options: options.clone(),
    })
}

/// Whether and how the audit selects genes, decided before any pass over the values.
enum HvgPlan<'a> {
    /// Every gene, and the sentence saying why.
    All(String),
    Select {
        hvg: &'a HvgOptions,
        batches: Option<Vec<u32>>,
        on: String,
        per_batch: String,
    },
}

fn hvg_plan<'a>(
    obs: &ObsTable,
    obs_names: &[String],
    n: usize,
    normalization: &NormalizationReport,
    cells: &[usize],
    options: &'a AuditOptions,
) -> Result<HvgPlan<'a>> {
    let Some(hvg) = &options.hvg else {
        return Ok(HvgPlan::All(format!("all {n} genes (gene selection off)")));
    };
    if n <= hvg.n_top_genes {
        return Ok(HvgPlan::All(format!("all {n} genes (no more than n_top_genes = {})", hvg.n_top_genes)));
    }
    let batches = match &hvg.batch_key {
        Some(key) => Some(batch_codes(obs, obs_names, key, cells)?),
        None => None,
    };
    let on = match hvg.flavor {
        HvgFlavor::Seurat => format!("seurat on ln({}+1)", scale_name(options.scale)),
        HvgFlavor::SeuratV3 if normalization.normalization != Normalization::RawCounts => {
            return Err(SclabelError::InvalidOption {
                option: "hvg.flavor".into(),
                reason: format!("seurat_v3 selects genes on raw counts, but {}; use flavor seurat", normalization.description),
            });
        }
        HvgFlavor::SeuratV3 => "seurat_v3 on counts".to_string(),
    };
    let per_batch = hvg.batch_key.as_ref().map_or(String::new(), |k| format!(", per batch of '{k}'"));
    Ok(HvgPlan::Select { hvg, batches, on, per_batch })
}

fn selection_sentence(n_selected: usize, n: usize, on: &str, per_batch: &str, n_cells: usize) -> String {
    format!("{n_selected} highly variable genes of {n} ({on}{per_batch}, {n_cells} cells)")
}

/// The audit's genes: `x` (log-normalised over all genes) restricted to the highly variable genes
/// of the audited `cells`, their names and a sentence saying how they were chosen.
#[allow(clippy::too_many_arguments)]
fn select_genes(
    obs: &ObsTable,
    obs_names: &[String],
    source_x: &CsrMatrix,
    x: CsrMatrix,
    all_genes: &[String],
    normalization: &NormalizationReport,
    cells: &[usize],
    options: &AuditOptions,
) -> Result<(CsrMatrix, Vec<String>, String)> {
    let n = all_genes.len();
    let (hvg, batches, on, per_batch) = match hvg_plan(obs, obs_names, n, normalization, cells, options)? {
        HvgPlan::All(sentence) => return Ok((x, all_genes.to_vec(), sentence)),
        HvgPlan::Select { hvg, batches, on, per_batch } => (hvg, batches, on, per_batch),
    };
    let input = if hvg.flavor == HvgFlavor::Seurat { &x } else { source_x };
    let selected = highly_variable_genes(input, cells, batches.as_deref(), hvg)?.selected;
    let names: Vec<String> = selected.iter().map(|&j| all_genes[j].clone()).collect();
    let how = selection_sentence(selected.len(), n, &on, &per_batch, cells.len());
    Ok((x.select_cols(&selected), names, how))
}

/// Batch code per row (only `cells` need one), from an obs column's values.
fn batch_codes(obs: &ObsTable, obs_names: &[String], key: &str, cells: &[usize]) -> Result<Vec<u32>> {
    let values = obs.get(key)?.to_strings();
    let mut seen: Vec<String> = Vec::new();
    let mut codes = vec![0u32; values.len()];
    for &r in cells {
        let v = values[r].as_deref().ok_or_else(|| {
            SclabelError::labels(format!("obs '{key}' (hvg.batch_key) has no value for cell '{}'", obs_names[r]))
                .in_column(key)
                .at_cell(&obs_names[r])
                .at_row(r)
        })?;
        codes[r] = match seen.iter().position(|s| s == v) {
            Some(k) => k as u32,
            None => {
                seen.push(v.to_string());
                (seen.len() - 1) as u32
            }
        };
    }
    Ok(codes)
}

fn scale_name(scale: TargetScale) -> &'static str {
    match scale {
        TargetScale::Cpm => "CPM",
        TargetScale::Cp10k => "CP10k",
    }
}

/// Per position in `cells`, whether its row is in `rows` (both sorted ascending).
fn flag(cells: &[usize], rows: &[usize]) -> Vec<bool> {
    cells.iter().map(|r| rows.binary_search(r).is_ok()).collect()
}

/// Annotatability's `predict_true_labels`: a fresh network trained on the trusted cells labels the
/// untrusted ones. Classes keep the full data set's indices even when a class has no trusted cell
/// (the reference re-encodes the trusted subset, which shifts indices in that case).
#[allow(clippy::too_many_arguments)]
async fn reannotate<O: Observer>(
    x: &CsrMatrix,
    codes: &[i32],
    n_classes: usize,
    cells: &[usize],
    trusted: &[bool],
    class_names: &[String],
    options: &TrainOptions,
    device: &ComputeDevice,
    observer: &mut O,
) -> Result<Vec<String>> {
    let trusted_rows: Vec<usize> = cells.iter().zip(trusted).filter(|(_, t)| **t).map(|(&r, _)| r).collect();
    let untrusted: Vec<usize> = cells.iter().zip(trusted).filter(|(_, t)| !**t).map(|(&r, _)| r).collect();
    let mut out: Vec<String> = cells.iter().map(|&r| class_names[codes[r] as usize].clone()).collect();
    if untrusted.is_empty() {
        return Ok(out);
    }
    if trusted_rows.is_empty() {
        return Err(SclabelError::labels("no cell is trusted, so there is nothing to re-annotate from"));
    }
    let model = train_mlp(x, codes, n_classes, &trusted_rows, options, None, &device.device, observer).await?.model;
    let proba = predict_proba(&model, x, &untrusted, 1024, &device.device, observer).await?;
    let predicted = proba.chunks(n_classes).map(|p| p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(k, _)| k));
    let positions: Vec<usize> = (0..cells.len()).filter(|&k| !trusted[k]).collect();
    for (k, c) in positions.into_iter().zip(predicted) {
        out[k] = class_names[c].clone();
    }
    Ok(out)
}

/// The trainability-aware graph of an audit's cells (Annotatability's `make_conf_graph`): PCA of
/// the audited cells' log-normalised matrix (when the caller has no embedding of its own), then
/// the blended-distance kNN graph. Rows and columns of the result follow `report.cells`.
pub async fn trainability_graph<O: Observer>(
    adata: &AnnData,
    report: &AuditReport,
    pca_options: &PcaOptions,
    graph_options: &ConfGraphOptions,
    device: &ComputeDevice,
    observer: &mut O,
) -> Result<ConfGraph> {
    let (source_x, var_names) = adata.matrix(report.options.use_raw)?;
    if source_x.n_rows != adata.n_obs() || report.cells.iter().any(|&r| r >= source_x.n_rows) {
        return Err(SclabelError::shape("the audit report does not belong to this data set"));
    }
    let (x, _) = to_log_normalized_with(source_x, var_names, &*adata.value_stats(report.options.use_raw)?, report.options.scale)?;
    // The audit's genes (normalised over all genes first, as the audit did).
    let position: std::collections::HashMap<&str, usize> = var_names.iter().enumerate().map(|(j, g)| (g.as_str(), j)).collect();
    let cols = report
        .genes
        .iter()
        .map(|g| position.get(g.as_str()).copied().ok_or_else(|| SclabelError::shape(format!("the audit report's gene '{g}' is not in this data set"))))
        .collect::<Result<Vec<usize>>>()?;
    let x = if cols.len() == var_names.len() { x } else { x.select_cols(&cols) };
    let sub = x.select_rows(&report.cells);
    let options = PcaOptions { n_components: pca_options.n_components.min(sub.n_rows.min(sub.n_cols)), ..*pca_options };
    let embedding = pca(&sub, &options)?;
    make_conf_graph(&embedding.scores, embedding.n_components, &report.dynamics.confidence, graph_options, &device.device, observer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_columns_line_up_with_the_files_cells() {
        let cats = [Category::EasyToLearn, Category::HardToLearn];
        let corrected = ["B".to_string(), "T".to_string()];
        let add = audit_additions(4, None, &[1, 3], &[0.9, 0.2], &[0.1, 0.3], &cats, Some(&corrected)).unwrap();
        let names: Vec<&str> = add.obs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["conf", "var", "Annotation", "corrected_label"]);
        let ObsValues::F32(conf) = &add.obs[0].1 else { panic!("conf is float32") };
        assert!(conf[0].is_nan() && conf[2].is_nan() && conf[1] == 0.9 && conf[3] == 0.2);
        let ObsValues::Categorical(category) = &add.obs[2].1 else { panic!("Annotation is categorical") };
        assert_eq!(category, &[None, Some("easy-to-learn".into()), None, Some("hard-to-learn".into())]);
        let e = audit_additions(4, None, &[1, 3], &[0.9], &[0.1, 0.3], &cats, None).unwrap_err();
        assert!(matches!(&e, SclabelError::InvalidOption { option, .. } if option == "audit.conf"), "{e}");
        let e = audit_additions(3, None, &[1, 3], &[0.9, 0.2], &[0.1, 0.3], &cats, None).unwrap_err();
        assert!(matches!(&e, SclabelError::InvalidOption { option, .. } if option == "audit.cells"), "{e}");
    }

    #[test]
    fn out_of_range_options_are_refused_by_name() {
        let with = |cutoffs| AuditOptions { cutoffs, ..AuditOptions::default() };
        let cases = [
            (with(CutoffRule::Fixed { confidence: 2.0, variability: 0.1 }), "cutoffs.confidence"),
            (with(CutoffRule::Fixed { confidence: f32::NAN, variability: 0.1 }), "cutoffs.confidence"),
            (with(CutoffRule::Fixed { confidence: 0.5, variability: -0.1 }), "cutoffs.variability"),
            (with(CutoffRule::Simulated { fraction: 0.0, percentile: 25.0 }), "cutoffs.fraction"),
            (with(CutoffRule::Simulated { fraction: 0.1, percentile: 101.0 }), "cutoffs.percentile"),
            (
                AuditOptions { gene_scores: Some(GeneScoreOptions { min_counts: -1.0, ..GeneScoreOptions::default() }), ..AuditOptions::default() },
                "gene_scores.min_counts",
            ),
        ];
        for (options, name) in cases {
            let e = options.validate().unwrap_err();
            assert_eq!(e.code(), "invalid_option");
            assert!(e.to_string().contains(name), "{e}");
        }
        assert!(AuditOptions::default().validate().is_ok());
        assert!(with(CutoffRule::Fixed { confidence: 0.9, variability: 0.2 }).validate().is_ok());
    }
}
