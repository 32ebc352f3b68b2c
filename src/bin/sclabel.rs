//! `sclabel`: the native command line over the same core as the browser package.
//!   sclabel train   --reference ref.h5ad [--query q.h5ad] --label-key cell_type [--domain-key donor] --out model.safetensors
//!   sclabel predict --model model.safetensors --input q.h5ad --out predictions.csv [--annotate-h5ad q_annotated.h5ad]
//!   sclabel import-scnym --weights 00_best_model_weights.pkl --genes gene_names.txt --classes class_names.txt --out model.safetensors
//!   sclabel info model.safetensors
//!   sclabel audit   --input data.h5ad --label-key cell_type --out audit.csv [--genes genes.csv]
//!   sclabel explain --model model.safetensors --input data.h5ad --label-key cell_type --target B --out saliency.csv
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use burn::prelude::Device;
use sclabel::atlas::build::{build_atlas, AtlasOptions, MATRIX_FILE, MODEL_FILE};
use sclabel::atlas::combine::{combine_references, ReferencePart, DATASET_COLUMN, LABEL_COLUMN};
use sclabel::atlas::matrix::ValueEncoding;
use sclabel::atlas::open::{open_atlas, AtlasFineTuneOptions};
use sclabel::audit::api::{audit_adata, audit_h5ad_rows, trainability_graph, AuditOptions, AuditReport, CutoffRule};
use sclabel::audit::categories::Category;
use sclabel::audit::genes::{GeneScoreOptions, GeneScores};
use sclabel::audit::graph::ConfGraphOptions;
use sclabel::audit::pca::PcaOptions;
use sclabel::backend::{select, BackendRequest, ComputeDevice};
use sclabel::block_on;
use sclabel::celltypist::{annotate, annotate_h5ad_rows, CelltypistModel, CelltypistOptions, CelltypistPrediction};
use sclabel::data::anndata::AnnData;
use sclabel::data::hvg::{HvgFlavor, HvgOptions};
use sclabel::data::normalize::TargetScale;
use sclabel::io::h5ad::{open_h5ad_rows, read_h5ad_source, read_h5ad_source_genes, H5adRows, ReadSeekSource};
use sclabel::io::h5ad_export::{annotate_h5ad, annotate_h5ad_copy, H5adAdditions};
use sclabel::scnym::api::{fine_tune, predict_adata, predict_h5ad_rows, train_transfer, train_transfer_h5ad, TransferOptions};
use sclabel::scnym::bundle::ScnymModel;
use sclabel::scnym::explain::{explain_h5ad_rows, ExplainOptions, Explanation};
use sclabel::scnym::import::{import_scnym, parse_list};
use sclabel::scnym::predict::{slots, PredictOptions, Prediction};
use sclabel::train::classifier::TrainOptions;
use sclabel::train::progress::{FnObserver, Phase, Progress};
use sclabel::{Result, SclabelError};

#[derive(Parser)]
#[command(name = "sclabel", version, about = "Single-cell label transfer (scNym), annotation audits (Annotatability) and gene explanations on h5ad files")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Compute backend: cpu, wgpu (Vulkan/Metal/DX12; needs a build with --features wgpu) or auto.
    #[arg(long, global = true, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
    /// Refuse (error code too_large) work whose data would take the heap past this many GiB,
    /// instead of running the machine out of memory (default: no limit).
    #[arg(long, allow_negative_numbers = true, global = true)]
    memory_limit_gib: Option<f64>,
    /// The var column that holds the gene names in the input files (scanpy's gene_symbols, e.g.
    /// feature_name in CELLxGENE files). Without it, gene matching uses whichever of var's
    /// identifier columns shares the most genes, and says which.
    #[arg(long, global = true)]
    var_names: Option<String>,
    /// Append JSON lines to this file (seconds since the command started and the progress event:
    /// epoch, step, loss, cells done) at each epoch's end, first step and tenth, and per prediction
    /// batch: a training log for long jobs, and what the benchmarks time epochs with (bench/gpu/).
    #[arg(long, global = true, value_name = "FILE")]
    progress_log: Option<PathBuf>,
}

/// `--progress-log`: the open file and when the command started.
static PROGRESS_LOG: std::sync::OnceLock<Option<std::sync::Mutex<(std::fs::File, std::time::Instant)>>> = std::sync::OnceLock::new();

/// `--var-names`, set once from the command line.
static VAR_NAMES: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

#[derive(Clone, Copy, ValueEnum)]
enum ScaleArg {
    Cp10k,
    Cpm,
}

#[derive(Clone, Copy, ValueEnum)]
enum HvgFlavorArg {
    Seurat,
    #[value(name = "seurat_v3")]
    SeuratV3,
}

// The CLI's enums mirror the core's, whose defaults they show (defaults are defined once, there).
impl From<TargetScale> for ScaleArg {
    fn from(s: TargetScale) -> Self {
        match s {
            TargetScale::Cp10k => ScaleArg::Cp10k,
            TargetScale::Cpm => ScaleArg::Cpm,
        }
    }
}

impl From<HvgFlavor> for HvgFlavorArg {
    fn from(f: HvgFlavor) -> Self {
        match f {
            HvgFlavor::Seurat => HvgFlavorArg::Seurat,
            HvgFlavor::SeuratV3 => HvgFlavorArg::SeuratV3,
        }
    }
}

/// A value encoding's name as the core spells it (its serde form: q8, f16, f32).
fn encoding_name(e: ValueEncoding) -> String {
    serde_json::to_value(e).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Cpu,
    Wgpu,
    Auto,
}

#[derive(Subcommand)]
enum Command {
    /// Train an scNym model: labelled reference cells (cells labelled `Unlabeled` and all query
    /// cells are used as unlabelled data for MixMatch and the domain adversary).
    Train {
        /// Labelled reference .h5ad (or --atlas).
        #[arg(long, required_unless_present = "atlas")]
        reference: Option<PathBuf>,
        /// Fine-tune from an atlas package (a folder from `sclabel atlas build`): its matrix is the
        /// labelled reference, its model the starting weights, its label/domain columns are used.
        #[arg(long, conflicts_with_all = ["reference", "init"])]
        atlas: Option<PathBuf>,
        /// Fine-tune from this model bundle's weights (genes and classes matched by name).
        #[arg(long)]
        init: Option<PathBuf>,
        /// Cells to transfer labels to (all treated as `Unlabeled`).
        #[arg(long)]
        query: Option<PathBuf>,
        #[arg(long, default_value_t = TransferOptions::default().label_key)]
        label_key: String,
        /// obs column with each cell's domain (batch, chemistry, donor, study).
        #[arg(long)]
        domain_key: Option<String>,
        /// obs column with train / test / val per labelled cell.
        #[arg(long)]
        split_key: Option<String>,
        /// Labels to leave out entirely (repeatable), e.g. unlabeled_QCfail.
        #[arg(long)]
        exclude_label: Vec<String>,
        /// One of: default, no_new_identity, new_identity_discovery, no_dan, no_ssl
        /// [default: new_identity_discovery, as the package's trainScnym and fineTuneAtlas].
        #[arg(long)]
        preset: Option<String>,
        /// JSON file with scNym config keys to change (merged into a copy of the preset).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        seed: Option<u64>,
        /// Convert X from whatever scale it is on to ln(CPM+1).
        #[arg(long)]
        normalize: bool,
        /// Use .raw instead of X.
        #[arg(long)]
        use_raw: bool,
        /// Whether the query's .raw is used (default: as --use-raw), e.g. `false` for a query of counts.
        #[arg(long)]
        query_use_raw: Option<bool>,
        /// Whether the query is converted to ln(CPM+1) (default: as --normalize; with --atlas, true).
        #[arg(long)]
        query_normalize: Option<bool>,
        /// At most this many query cells train (a seeded subsample of a bigger query; 0: all).
        #[arg(long, default_value_t = sclabel::scnym::api::MAX_QUERY_CELLS)]
        max_query_cells: usize,
        /// Train on these genes only: a file with one gene name per line (e.g. highly variable genes).
        #[arg(long, conflicts_with = "atlas")]
        genes: Option<PathBuf>,
        /// Where to write the model bundle (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Also predict the query (or the reference's Unlabeled cells) and write a CSV.
        #[arg(long)]
        predictions: Option<PathBuf>,
        #[arg(long, allow_negative_numbers = true)]
        unassigned_below: Option<f32>,
    },
    /// Label cells with a trained model; writes cell, scNym, scNym_confidence and one probability
    /// column per class. A CellTypist model (its .pkl, or the bundle `celltypist convert` writes)
    /// gives CellTypist's annotation instead: cell, predicted_labels, prob_match, conf_score (and
    /// over_clustering, majority_voting), then one probability column per class.
    Predict {
        /// An sclabel bundle (.safetensors) or a CellTypist model (.pkl).
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        normalize: bool,
        #[arg(long)]
        use_raw: bool,
        /// Cells less confident than this get the label Unassigned.
        #[arg(long, allow_negative_numbers = true)]
        unassigned_below: Option<f32>,
        #[arg(long)]
        out: PathBuf,
        /// Also write the embedding (X_scnym) as CSV.
        #[arg(long)]
        embedding: Option<PathBuf>,
        /// Also write a copy of the input .h5ad with obs scNym / scNym_confidence and obsm X_scnym
        /// added (CellTypist: obs predicted_labels, conf_score, majority_voting, over_clustering;
        /// everything else as it was).
        #[arg(long, value_name = "OUT")]
        annotate_h5ad: Option<PathBuf>,
        /// CellTypist models: the prob match threshold.
        #[arg(long, default_value_t = CelltypistOptions::default().p_thres)]
        p_thres: f64,
        /// CellTypist models: vote within an over-clustering of the cells (Leiden on a kNN graph).
        #[arg(long)]
        majority_voting: bool,
        /// CellTypist models: an obs column of clusters to vote within, instead of over-clustering.
        #[arg(long, requires = "majority_voting")]
        over_clustering: Option<String>,
        /// CellTypist models: a cluster whose top label has fewer than this share of its cells is
        /// Heterogeneous.
        #[arg(long, default_value_t = 0.0)]
        min_prop: f64,
    },
    /// CellTypist models.
    #[command(subcommand)]
    Celltypist(CelltypistCommand),
    /// Turn a model trained by scNym 0.4 in Python into a bundle.
    ImportScnym {
        /// scNym's 00_best_model_weights.pkl (a torch.save'd state dict).
        #[arg(long)]
        weights: PathBuf,
        /// Genes in the model's input order, one per line.
        #[arg(long)]
        genes: PathBuf,
        /// Class names in the model's output order, one per line.
        #[arg(long)]
        classes: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a bundle's metadata (or a CellTypist model's).
    Info { model: PathBuf },
    /// Atlases: a labelled reference preconverted for browsers, with a model trained on it.
    #[command(subcommand)]
    Atlas(AtlasCommand),
    /// Audit annotations from training dynamics (Annotatability): per cell conf, var, trusted,
    /// category and a corrected label; optionally gene scores.
    Audit {
        #[arg(long)]
        input: PathBuf,
        #[arg(long, default_value_t = AuditOptions::default().label_key)]
        label_key: String,
        /// A second label column whose probabilities are followed too (same classes).
        #[arg(long)]
        second_label_key: Option<String>,
        /// Labels to leave out entirely (repeatable), e.g. unlabeled_QCfail.
        #[arg(long)]
        exclude_label: Vec<String>,
        #[arg(long, default_value_t = AuditOptions::default().train.n_epochs)]
        n_epochs: usize,
        /// 3, 4 or 5 Linear layers.
        #[arg(long, default_value_t = AuditOptions::default().train.n_layers)]
        n_layers: usize,
        #[arg(long, default_value_t = AuditOptions::default().train.seed)]
        seed: u64,
        #[arg(long)]
        use_raw: bool,
        /// Scale the data are brought to (from counts or any log scale, over all genes) before
        /// gene selection and training: ln(CP10k+1) as Annotatability's notebooks, or ln(CPM+1).
        #[arg(long, value_enum, default_value_t = ScaleArg::from(AuditOptions::default().scale))]
        scale: ScaleArg,
        /// Train on this many highly variable genes of the audited cells (0: every gene).
        #[arg(long, default_value_t = HvgOptions::default().n_top_genes)]
        n_top_genes: usize,
        /// Highly-variable-gene method: seurat (on the log-normalised data) or seurat_v3 (on
        /// raw counts).
        #[arg(long, value_enum, default_value_t = HvgFlavorArg::from(HvgOptions::default().flavor))]
        hvg_flavor: HvgFlavorArg,
        /// obs column of batches: genes are selected per batch and combined (scanpy's batch_key).
        #[arg(long)]
        hvg_batch_key: Option<String>,
        /// Fraction of labels flipped in the run that sets the cutoffs.
        #[arg(long, allow_negative_numbers = true, default_value_t = CutoffRule::DEFAULT_FRACTION)]
        flip_fraction: f64,
        /// Percentile of the flipped cells' scores taken as the cutoffs.
        #[arg(long, allow_negative_numbers = true, default_value_t = CutoffRule::DEFAULT_PERCENTILE)]
        percentile: f64,
        /// Fixed cutoffs instead of the simulated-noise run (both needed).
        #[arg(long, allow_negative_numbers = true, requires = "cutoff_var")]
        cutoff_conf: Option<f32>,
        #[arg(long, allow_negative_numbers = true, requires = "cutoff_conf")]
        cutoff_var: Option<f32>,
        /// Don't re-annotate untrusted cells.
        #[arg(long)]
        no_reannotate: bool,
        /// Per-cell CSV: cell, label, conf, var, trusted, category, corrected label.
        #[arg(long)]
        out: PathBuf,
        /// Also write a copy of the input .h5ad with obs conf, var, Annotation and corrected_label
        /// added, as Annotatability writes them (everything else as it was).
        #[arg(long, value_name = "OUT")]
        annotate_h5ad: Option<PathBuf>,
        /// Gene scores CSV (conf_score_high, conf_score_low, conf_score_mid).
        #[arg(long)]
        genes: Option<PathBuf>,
        /// Genes with a column sum below this are not scored.
        #[arg(long, allow_negative_numbers = true, default_value_t = GeneScoreOptions::default().min_counts)]
        min_counts: f64,
        /// Trainability-aware kNN graph as an edge list CSV (cell, neighbor, weight, distance),
        /// built on a PCA of the audited cells.
        #[arg(long)]
        graph: Option<PathBuf>,
        /// Weight of expression distance against confidence-rank distance in the graph.
        #[arg(long, allow_negative_numbers = true, default_value_t = ConfGraphOptions::default().alpha)]
        alpha: f64,
        #[arg(long, default_value_t = ConfGraphOptions::default().k)]
        k: usize,
        #[arg(long, default_value_t = PcaOptions::default().n_components)]
        n_pcs: usize,
    },
    /// Expected-gradient gene attributions of a class's logit (scNym's interpret): per-gene
    /// saliency ranked, optionally the per-cell attributions. The file is read a block of cells at
    /// a time; at most 10,000 reference cells are kept (a seeded sample of a bigger pool).
    Explain {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// obs column that says which cells are of the target (and source) class.
        #[arg(long)]
        label_key: String,
        #[arg(long)]
        target: String,
        /// Reference class; default: all other cells.
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = ExplainOptions::default().n_samples)]
        n_samples: usize,
        /// Explain a random subset of this many target cells.
        #[arg(long)]
        n_cells: Option<usize>,
        /// scNym's |x − x′| scaling instead of the signed difference.
        #[arg(long)]
        abs_scale: bool,
        #[arg(long, default_value_t = ExplainOptions::default().seed)]
        seed: u64,
        #[arg(long)]
        normalize: bool,
        #[arg(long)]
        use_raw: bool,
        /// Saliency CSV: gene, saliency, rank.
        #[arg(long)]
        out: PathBuf,
        /// Per-cell attributions CSV (cells × genes).
        #[arg(long)]
        attributions: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CelltypistCommand {
    /// A CellTypist model (.pkl) as an sclabel bundle (.safetensors: no pickle, no code), for
    /// pages to load instead of the pickle; prints what the model is.
    Convert {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AtlasCommand {
    /// Reference h5ad → OUT/ with matrix.safetensors.zlib (the compact reference), model.safetensors
    /// (scNym trained on exactly that matrix) and atlas.json (classes, counts, genes, provenance,
    /// licence, training metrics, sizes and SHA-256 of each file).
    Build {
        /// Labelled reference .h5ad; repeat it to combine several (normalised each on its own
        /// genes, restricted to the genes all share, labels harmonised by --label-map; the atlas's
        /// columns are then `cell_type` and `dataset`, the file name or file:domain).
        #[arg(long, required = true)]
        reference: Vec<PathBuf>,
        /// JSON file mapping each source label to one vocabulary ({"Naive CD4 T": "CD4 T", "NA": null, …});
        /// null drops the cells, an unmapped label is an error.
        #[arg(long)]
        label_map: Option<PathBuf>,
        /// Atlas identifier (letters, digits, '-', '_', '.').
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        species: Option<String>,
        #[arg(long)]
        tissue: Option<String>,
        /// Licence of the source data (travels with the atlas).
        #[arg(long)]
        license: Option<String>,
        /// Where the source data come from (citation, URL).
        #[arg(long)]
        source: Option<String>,
        /// JSON file mapping labels to Cell Ontology IDs ({"B cell": "CL:0000236", …}).
        #[arg(long)]
        ontology: Option<PathBuf>,
        #[arg(long, default_value_t = AtlasOptions::default().label_key)]
        label_key: String,
        #[arg(long)]
        domain_key: Option<String>,
        #[arg(long)]
        use_raw: bool,
        /// Convert X from whatever scale it is on to ln(CPM+1).
        #[arg(long)]
        normalize: bool,
        /// Keep at most this many cells per class (seeded random subset).
        #[arg(long)]
        max_cells_per_class: Option<usize>,
        /// How values are stored: q8 (1 byte, error ≤ max/510), f16 or f32.
        #[arg(long, default_value_t = encoding_name(AtlasOptions::default().values))]
        values: String,
        /// scNym preset of the shipped model.
        #[arg(long, default_value_t = AtlasOptions::default().preset)]
        preset: String,
        /// JSON file with scNym config keys.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = AtlasOptions::default().seed)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| SclabelError::InvalidFile { file: path.display().to_string(), reason: e.to_string() })
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| SclabelError::InvalidFile { file: path.display().to_string(), reason: format!("can't write: {e}") })
}

/// An `.h5ad`'s X (or `.raw`) for reading a block of cells at a time (memory: the model's genes
/// of one block, not the file), under `--var-names` when given.
fn open_rows(input: &Path, use_raw: bool) -> Result<H5adRows> {
    let mut rows = open_h5ad_rows(file_source(input)?, &input.display().to_string(), use_raw)?;
    if let Some(column) = VAR_NAMES.get().cloned().flatten() {
        rows.use_var_names_from(&column)?;
    }
    Ok(rows)
}

/// Reads on demand from disk, so a big file is never held whole next to its decoded matrix.
fn load_model(path: &Path, device: &Device) -> Result<ScnymModel> {
    ScnymModel::from_bytes(&read(path)?, device).map_err(|e| match e {
        SclabelError::InvalidFile { reason, .. } => SclabelError::InvalidFile { file: path.display().to_string(), reason },
        e => e,
    })
}

/// A file on disk as a source the `.h5ad` readers read on demand.
fn file_source(path: &Path) -> Result<ReadSeekSource<std::io::BufReader<std::fs::File>>> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| SclabelError::InvalidFile { file: name.clone(), reason: e.to_string() })?;
    ReadSeekSource::new(std::io::BufReader::new(file)).map_err(|e| SclabelError::InvalidFile { file: name, reason: e.to_string() })
}

/// A text file's non-empty lines, trimmed (a gene list).
fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = String::from_utf8(read(path)?).map_err(|_| SclabelError::InvalidFile { file: path.display().to_string(), reason: "not UTF-8 text".into() })?;
    // A byte-order mark (Windows editors write one) is not whitespace: it would join the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

fn load_h5ad(path: &Path) -> Result<AnnData> {
    let ad = read_h5ad_source(file_source(path)?, &path.display().to_string())?;
    match VAR_NAMES.get().cloned().flatten() {
        Some(column) => ad.with_var_names_from(&column),
        None => Ok(ad),
    }
}

fn device(arg: BackendArg) -> Result<ComputeDevice> {
    let request = match arg {
        BackendArg::Cpu => BackendRequest::Cpu,
        BackendArg::Wgpu => BackendRequest::Webgpu,
        BackendArg::Auto => BackendRequest::Auto,
    };
    let support = if cfg!(feature = "wgpu") { Ok(()) } else { Err("this build has no wgpu backend (rebuild with --features wgpu)".to_string()) };
    let d = block_on(select(request, support))?;
    match &d.info.adapter {
        Some(adapter) => eprintln!("backend: {:?} on {adapter} ({})", d.info.backend, d.info.reason),
        None => eprintln!("backend: {:?} ({})", d.info.backend, d.info.reason),
    }
    Ok(d)
}

/// A progress bar fed by the core's progress events.
fn bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(1);
    b.set_style(ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {msg} ({eta})").expect("template").progress_chars("=> "));
    b
}

fn observe(bar: &ProgressBar) -> FnObserver<impl FnMut(&Progress) -> Result<()> + '_> {
    FnObserver(move |p: &Progress| {
        log_progress(p);
        match p.phase {
            Phase::Train => {
                bar.set_prefix("train");
                bar.set_length((p.n_epochs * p.steps_per_epoch) as u64);
                bar.set_position((p.epoch * p.steps_per_epoch + p.step) as u64);
                if let Some(l) = p.loss {
                    bar.set_message(format!(
                        "epoch {}/{} loss {l:.4}{}",
                        p.epoch + 1,
                        p.n_epochs,
                        p.accuracy.map(|a| format!(" val acc {a:.3}")).unwrap_or_default()
                    ));
                }
            }
            Phase::Predict => {
                bar.set_prefix("predict");
                bar.set_length(p.cells_total as u64);
                bar.set_position(p.cells_done as u64);
            }
        }
        Ok(())
    })
}

/// One line of `--progress-log` per prediction batch, per epoch's end (it carries the loss), and
/// for an epoch's first step and each tenth of it (a rate even for a run stopped mid-epoch).
fn log_progress(p: &Progress) {
    let Some(Some(log)) = PROGRESS_LOG.get() else { return };
    if p.phase == Phase::Train && p.loss.is_none() && p.step != 1 && !p.step.is_multiple_of((p.steps_per_epoch / 10).max(1)) {
        return;
    }
    let mut guard = log.lock().unwrap_or_else(|e| e.into_inner());
    let (file, start) = &mut *guard;
    let line = serde_json::json!({ "t": start.elapsed().as_secs_f64(), "progress": p });
    // A log that cannot be written must not stop the job it logs: say so once per line.
    if let Err(e) = writeln!(file, "{line}") {
        eprintln!("warning: --progress-log: {e}");
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_predictions(path: &Path, cells: &[String], p: &Prediction) -> Result<()> {
    let columns = format!("{},{}", slots::LABELS, slots::CONFIDENCE);
    write_class_table(path, cells, &columns, &p.classes, &p.probabilities, |i| format!("{},{}", csv_field(&p.labels[i]), p.confidence[i]))
}

/// A per-cell CSV: `cell`, `columns` (each row's from `row(i)`), then one column per class with
/// its probability (`probabilities`: cells × classes, row-major).
fn write_class_table<V: std::fmt::Display>(
    path: &Path,
    cells: &[String],
    columns: &str,
    classes: &[String],
    probabilities: &[V],
    row: impl Fn(usize) -> String,
) -> Result<()> {
    let mut out = format!("cell,{columns}");
    for c in classes {
        out.push(',');
        out.push_str(&csv_field(c));
    }
    out.push('\n');
    let k = classes.len();
    for (i, cell) in cells.iter().enumerate() {
        out.push_str(&format!("{},{}", csv_field(cell), row(i)));
        for v in &probabilities[i * k..(i + 1) * k] {
            out.push_str(&format!(",{v}"));
        }
        out.push('\n');
    }
    write(path, out.as_bytes())
}

/// Whether a model file is CellTypist's: a pickle, or an sclabel bundle of a CellTypist model.
fn is_celltypist(path: &Path) -> Result<bool> {
    Ok(CelltypistModel::is_celltypist(&read(path)?))
}

fn load_celltypist(path: &Path) -> Result<CelltypistModel> {
    CelltypistModel::from_bytes(&read(path)?, &path.display().to_string())
}

fn write_celltypist_predictions(path: &Path, cells: &[String], p: &CelltypistPrediction) -> Result<()> {
    let voted = p.majority_voting.as_ref().zip(p.over_clustering.as_ref());
    let columns =
        if voted.is_some() { "predicted_labels,prob_match,conf_score,over_clustering,majority_voting" } else { "predicted_labels,prob_match,conf_score" };
    write_class_table(path, cells, columns, &p.classes, &p.probability, |i| {
        let mut row = format!("{},{},{}", csv_field(&p.predicted_labels[i]), csv_field(&p.prob_match[i]), p.conf_score[i]);
        if let Some((v, c)) = voted {
            row.push_str(&format!(",{},{}", c[i], csv_field(&v[i])));
        }
        row
    })
}

fn write_embedding(path: &Path, cells: &[String], p: &Prediction) -> Result<()> {
    let e = p.embedding.as_ref().expect("embedding requested");
    let d = p.embedding_dim;
    let mut out = String::from("cell");
    (0..d).for_each(|j| out.push_str(&format!(",{}_{j}", slots::EMBEDDING)));
    out.push('\n');
    for (i, cell) in cells.iter().enumerate() {
        out.push_str(&csv_field(cell));
        e[i * d..(i + 1) * d].iter().for_each(|v| out.push_str(&format!(",{v}")));
        out.push('\n');
    }
    write(path, out.as_bytes())
}

/// A copy of the input with the prediction written in as scNym writes it to an AnnData: edited in
/// place in a copy the file system makes (never the whole file rebuilt beside itself; hdf5-pure
/// still mirrors h5py's version-0 files to edit them), or rebuilt in memory where the editor
/// can't (anndata ≤ 0.6 tables are converted).
fn write_annotated_h5ad(input: &Path, output: &Path, additions: &H5adAdditions) -> Result<()> {
    match annotate_h5ad_copy(input, output, additions) {
        Err(SclabelError::UnsupportedLayout { element, reason, .. }) => {
            eprintln!("note: {element}: {reason}; rebuilding the file in memory instead");
            write(output, &annotate_h5ad(read(input)?, &input.display().to_string(), additions)?)
        }
        done => done,
    }
}

/// A trained model's warnings, provenance (reference file, backend) and summary, then the bundle
/// written to `out`.
fn finish_training(mut model: ScnymModel, warnings: &[String], reference: &Path, dev: &ComputeDevice, out: &Path) -> Result<ScnymModel> {
    warnings.iter().for_each(|w| eprintln!("warning: {w}"));
    model.provenance.details.insert("reference".into(), reference.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
    model.provenance.details.insert("backend".into(), format!("{:?}", dev.info.backend));
    summary(&model);
    write(out, &block_on(model.to_bytes())?)?;
    eprintln!("model written to {}", out.display());
    Ok(model)
}

fn summary(model: &ScnymModel) {
    if let Some(m) = &model.metrics {
        eprintln!(
            "trained ({}): {} train / {} model-selection / {} held-out cells, {} unlabelled; best epoch {}; held-out accuracy {}",
            m.mode,
            m.n_train,
            m.n_model_selection,
            m.n_holdout,
            m.n_unlabeled,
            m.best_epoch,
            m.final_accuracy.map(|a| format!("{a:.4}")).unwrap_or_else(|| "n/a".into())
        );
    }
}

fn write_audit(path: &Path, obs_names: &[String], r: &AuditReport) -> Result<()> {
    let mut out = String::from("cell,label,conf,var,trusted,category");
    if r.corrected_labels.is_some() {
        out.push_str(",corrected_label");
    }
    if r.second.is_some() {
        out.push_str(",conf_second,var_second");
    }
    out.push('\n');
    for (k, &row) in r.cells.iter().enumerate() {
        out.push_str(&format!(
            "{},{},{},{},{},{}",
            csv_field(&obs_names[row]),
            csv_field(&r.labels[k]),
            r.dynamics.confidence[k],
            r.dynamics.variability[k],
            r.trusted[k],
            r.categories[k].as_str()
        ));
        if let Some(c) = &r.corrected_labels {
            out.push_str(&format!(",{}", csv_field(&c[k])));
        }
        if let Some(d) = &r.second {
            out.push_str(&format!(",{},{}", d.confidence[k], d.variability[k]));
        }
        out.push('\n');
    }
    write(path, out.as_bytes())
}

fn write_gene_scores(path: &Path, g: &GeneScores) -> Result<()> {
    let mut out = String::from("gene,conf_score_high,conf_score_low,conf_score_mid\n");
    for (i, gene) in g.genes.iter().enumerate() {
        out.push_str(&format!("{},{},{},{}\n", csv_field(gene), g.conf_score_high[i], g.conf_score_low[i], g.conf_score_mid[i]));
    }
    write(path, out.as_bytes())
}

fn write_saliency(path: &Path, e: &Explanation) -> Result<()> {
    let mut out = String::from("gene,saliency,rank\n");
    for (rank, &g) in e.ranking.iter().enumerate() {
        out.push_str(&format!("{},{},{}\n", csv_field(&e.genes[g]), e.saliency[g], rank + 1));
    }
    write(path, out.as_bytes())
}

fn write_attributions(path: &Path, obs_names: &[String], e: &Explanation) -> Result<()> {
    let mut out = String::from("cell");
    e.genes.iter().for_each(|g| out.push_str(&format!(",{}", csv_field(g))));
    out.push('\n');
    let n = e.genes.len();
    for (k, &row) in e.cells.iter().enumerate() {
        out.push_str(&csv_field(&obs_names[row]));
        e.attributions[k * n..(k + 1) * n].iter().for_each(|v| out.push_str(&format!(",{v}")));
        out.push('\n');
    }
    write(path, out.as_bytes())
}

fn run(cli: Cli) -> Result<()> {
    VAR_NAMES.set(cli.var_names.clone()).expect("set once");
    let log = match &cli.progress_log {
        Some(p) => Some(std::sync::Mutex::new((
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| SclabelError::InvalidFile { file: p.display().to_string(), reason: format!("can't write: {e}") })?,
            std::time::Instant::now(),
        ))),
        None => None,
    };
    PROGRESS_LOG.set(log).expect("set once");
    if let Some(g) = cli.memory_limit_gib {
        if !(g > 0.0 && g.is_finite()) {
            return Err(SclabelError::InvalidOption { option: "--memory-limit-gib".into(), reason: format!("must be a positive number, got {g}") });
        }
        sclabel::memory::set_limit(Some((g * (1u64 << 30) as f64) as u64));
    }
    match cli.command {
        Command::Train {
            reference,
            atlas,
            init,
            query,
            label_key,
            domain_key,
            split_key,
            exclude_label,
            preset,
            config,
            seed,
            normalize,
            use_raw,
            query_use_raw,
            query_normalize,
            max_query_cells,
            genes,
            out,
            predictions,
            unassigned_below,
        } => {
            let mut config: Option<serde_json::Value> = match &config {
                Some(p) => Some(
                    serde_json::from_slice(&read(p)?)
                        .map_err(|e| SclabelError::InvalidFile { file: p.display().to_string(), reason: format!("not JSON: {e}") })?,
                ),
                None => None,
            };
            if let Some(s) = seed {
                config.get_or_insert_with(|| serde_json::json!({}))["seed"] = s.into();
            }
            let dev = device(cli.backend)?;
            let max_query_cells = (max_query_cells > 0).then_some(max_query_cells);
            let own_options = TransferOptions {
                label_key,
                domain_key,
                split_key,
                exclude_labels: exclude_label.clone(),
                preset: preset.clone().unwrap_or_else(|| TransferOptions::default().preset),
                config: config.clone(),
                normalize,
                use_raw,
                query_use_raw,
                query_normalize,
                max_query_cells,
                genes: genes.as_deref().map(read_lines).transpose()?,
            };
            // Files are trained from directly (read a block of cells at a time, the reference's
            // training genes held compactly), unless fine-tuning (from --init or --atlas) or
            // predicting the reference's own Unlabeled cells, which take the loaded data.
            if let (None, None, Some(reference)) = (&atlas, &init, &reference) {
                if predictions.is_none() || query.is_some() {
                    let options = own_options;
                    let r = open_rows(reference, options.use_raw)?;
                    let query_raw = options.query_use_raw.unwrap_or(options.use_raw);
                    let q = query.as_deref().map(|p| open_rows(p, query_raw)).transpose()?;
                    let bar = bar(cli.quiet);
                    let (model, warnings) = block_on(train_transfer_h5ad(&r, q.as_ref(), &options, &dev.device, &mut observe(&bar)))?;
                    bar.finish_and_clear();
                    let model = finish_training(model, &warnings, reference, &dev, &out)?;
                    if let (Some(path), Some(q)) = (predictions, &q) {
                        let normalize = options.query_normalize.unwrap_or(options.normalize);
                        let predict_options = PredictOptions { normalize, unassigned_below, embedding: false, ..Default::default() };
                        let (pred, report) = block_on(predict_h5ad_rows(&model, q, &predict_options, &dev.device, &mut observe(&bar)))?;
                        report.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
                        write_predictions(&path, &q.obs_names, &pred)?;
                        eprintln!("predictions written to {}", path.display());
                    }
                    return Ok(());
                }
            }
            let (r, pretrained, options, reference) = match (&atlas, reference) {
                (Some(dir), _) => {
                    let a = open_atlas(&read(&dir.join("atlas.json"))?, |p| read(&dir.join(p)), &dev.device)?;
                    let defaults = AtlasFineTuneOptions::default();
                    let options = a.fine_tune_options(&AtlasFineTuneOptions {
                        preset: preset.unwrap_or(defaults.preset),
                        config,
                        // The query is normalised unless --query-normalize false (--normalize is the default already).
                        normalize: query_normalize.unwrap_or(defaults.normalize),
                        use_raw: query_use_raw.unwrap_or(use_raw),
                        exclude_labels: exclude_label,
                        max_query_cells,
                    });
                    (a.matrix.to_anndata(), Some(a.model), options, dir.clone())
                }
                (None, Some(reference)) => {
                    let pretrained = init.as_deref().map(|p| load_model(p, &dev.device)).transpose()?;
                    (load_h5ad(&reference)?, pretrained, own_options, reference)
                }
                (None, None) => unreachable!("clap requires --reference or --atlas"),
            };
            // The query's X keeps only the reference's genes (with its whole-row statistics, so
            // normalisation is unchanged); its .raw, when asked for, is read whole.
            let q = match query.as_deref() {
                Some(path) if !options.query_use_raw.unwrap_or(options.use_raw) && VAR_NAMES.get().cloned().flatten().is_none() => {
                    let (_, rgenes) = r.matrix(options.use_raw)?;
                    Some(read_h5ad_source_genes(file_source(path)?, &path.display().to_string(), rgenes)?)
                }
                Some(path) => Some(load_h5ad(path)?),
                None => None,
            };
            let bar = bar(cli.quiet);
            let (model, warnings) = match &pretrained {
                Some(m) => block_on(fine_tune(m, &r, q.as_ref(), &options, &dev.device, &mut observe(&bar)))?,
                None => block_on(train_transfer(&r, q.as_ref(), &options, &dev.device, &mut observe(&bar)))?,
            };
            bar.finish_and_clear();
            let model = finish_training(model, &warnings, &reference, &dev, &out)?;
            if let Some(path) = predictions {
                // The query, or else the reference's Unlabeled cells (only those are predicted).
                let unlabeled;
                let (target, target_raw, target_normalize) = match &q {
                    Some(q) => (q, options.query_use_raw.unwrap_or(options.use_raw), options.query_normalize.unwrap_or(options.normalize)),
                    None => {
                        let labels = r.obs.get(&options.label_key)?.to_strings();
                        unlabeled = r.select_obs(&(0..r.n_obs()).filter(|&i| labels[i].as_deref() == Some("Unlabeled")).collect::<Vec<_>>())?;
                        (&unlabeled, options.use_raw, options.normalize)
                    }
                };
                let predict_options =
                    PredictOptions { normalize: target_normalize, use_raw: target_raw, unassigned_below, embedding: false, ..Default::default() };
                let (pred, report) = block_on(predict_adata(&model, target, &predict_options, &dev.device, &mut observe(&bar)))?;
                report.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
                write_predictions(&path, &target.obs_names, &pred)?;
                eprintln!("predictions written to {}", path.display());
            }
        }
        Command::Predict { model, input, use_raw, out, annotate_h5ad, p_thres, majority_voting, over_clustering, min_prop, .. } if is_celltypist(&model)? => {
            let m = load_celltypist(&model)?;
            let options = CelltypistOptions { p_thres, use_raw, majority_voting, over_clustering, min_prop, ..Default::default() };
            let bar = bar(cli.quiet);
            // Read a block of cells at a time unless the over-clustering needs every gene loaded.
            let (pred, report, cells) = if majority_voting && options.over_clustering.is_none() {
                let data = load_h5ad(&input)?;
                let (p, r) = block_on(annotate(&m, &data, &options, &mut observe(&bar)))?;
                (p, r, data.obs_names)
            } else {
                let rows = open_rows(&input, use_raw)?;
                let (p, r) = block_on(annotate_h5ad_rows(&m, &rows, &options, &mut observe(&bar)))?;
                (p, r, rows.obs_names)
            };
            bar.finish_and_clear();
            report.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
            eprintln!(
                "{} of the model's {} genes found (matched by {}); input: {}",
                report.overlap.shared, report.overlap.model_genes, report.overlap.matched_by, report.normalization.description
            );
            if let Some(c) = &pred.clustering {
                eprintln!("majority voting: {c}");
            }
            write_celltypist_predictions(&out, &cells, &pred)?;
            eprintln!("CellTypist predictions for {} cells written to {}", cells.len(), out.display());
            if let Some(path) = annotate_h5ad {
                write_annotated_h5ad(&input, &path, &pred.anndata_additions())?;
                eprintln!("{} with CellTypist's columns written to {}", input.display(), path.display());
            }
        }
        Command::Celltypist(CelltypistCommand::Convert { model, out }) => {
            let m = load_celltypist(&model)?;
            write(&out, &m.to_bundle_bytes()?)?;
            eprintln!(
                "{}: CellTypist {} of {} types × {} genes (scaled {} the mean) written to {}",
                model.display(),
                m.classifier,
                m.classes.len(),
                m.features.len(),
                if m.with_mean { "with" } else { "without" },
                out.display()
            );
        }
        Command::Predict { model, input, normalize, use_raw, unassigned_below, out, embedding, annotate_h5ad, .. } => {
            let dev = device(cli.backend)?;
            let m = load_model(&model, &dev.device)?;
            let rows = open_rows(&input, use_raw)?;
            let bar = bar(cli.quiet);
            let options =
                PredictOptions { normalize, use_raw, unassigned_below, embedding: embedding.is_some() || annotate_h5ad.is_some(), ..Default::default() };
            let (pred, report) = block_on(predict_h5ad_rows(&m, &rows, &options, &dev.device, &mut observe(&bar)))?;
            bar.finish_and_clear();
            report.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
            eprintln!(
                "{} of the model's {} genes found (matched by {}); input: {}",
                report.overlap.shared, report.overlap.model_genes, report.overlap.matched_by, report.normalization.description
            );
            write_predictions(&out, &rows.obs_names, &pred)?;
            if let Some(e) = embedding {
                write_embedding(&e, &rows.obs_names, &pred)?;
            }
            eprintln!("predictions for {} cells written to {}", rows.n_rows, out.display());
            if let Some(path) = annotate_h5ad {
                write_annotated_h5ad(&input, &path, &pred.anndata_additions())?;
                eprintln!("{} with scNym, scNym_confidence and X_scnym written to {}", input.display(), path.display());
            }
        }
        Command::ImportScnym { weights, genes, classes, out } => {
            let list = |p: &Path| -> Result<Vec<String>> {
                String::from_utf8(read(p)?)
                    .map(|t| parse_list(&t))
                    .map_err(|_| SclabelError::InvalidFile { file: p.display().to_string(), reason: "not UTF-8 text".into() })
            };
            let dev = device(cli.backend)?;
            let name = weights.display().to_string();
            let model = import_scnym(&read(&weights)?, &name, list(&genes)?, list(&classes)?, &dev.device)?;
            write(&out, &block_on(model.to_bytes())?)?;
            eprintln!("imported {} genes → {} classes; bundle written to {}", model.arch.n_genes, model.arch.n_classes, out.display());
        }
        Command::Atlas(AtlasCommand::Build {
            reference,
            label_map,
            id,
            name,
            species,
            tissue,
            license,
            source,
            ontology,
            label_key,
            domain_key,
            use_raw,
            normalize,
            max_cells_per_class,
            values,
            preset,
            config,
            seed,
            out,
        }) => {
            let json_file = |p: &Path| -> Result<serde_json::Value> {
                serde_json::from_slice(&read(p)?).map_err(|e| SclabelError::InvalidFile { file: p.display().to_string(), reason: format!("not JSON: {e}") })
            };
            let values: ValueEncoding = serde_json::from_value(serde_json::Value::String(values.clone()))
                .map_err(|_| SclabelError::InvalidOption { option: "values".into(), reason: format!("'{values}': use q8, f16 or f32") })?;
            let ontology = match &ontology {
                Some(p) => serde_json::from_value(json_file(p)?)
                    .map_err(|e| SclabelError::InvalidFile { file: p.display().to_string(), reason: format!("expected {{\"label\": \"CL:…\"}}: {e}") })?,
                None => Default::default(),
            };
            let config = config.as_deref().map(json_file).transpose()?;
            let mut options = AtlasOptions {
                id,
                name,
                species,
                tissue,
                license,
                source,
                ontology,
                label_key,
                domain_key,
                use_raw,
                normalize,
                max_cells_per_class,
                values,
                preset,
                config,
                seed,
            };
            let dev = device(cli.backend)?;
            let sources = reference.iter().map(|p| load_h5ad(p)).collect::<Result<Vec<_>>>()?;
            let r = if sources.len() == 1 && label_map.is_none() {
                sources.into_iter().next().expect("one")
            } else {
                let map = match &label_map {
                    Some(p) => serde_json::from_value(json_file(p)?).map_err(|e| SclabelError::InvalidFile {
                        file: p.display().to_string(),
                        reason: format!("expected {{\"label\": \"harmonised label\" or null}}: {e}"),
                    })?,
                    None => Default::default(),
                };
                let parts: Vec<ReferencePart> = reference
                    .iter()
                    .zip(&sources)
                    .map(|(p, adata)| ReferencePart {
                        name: p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                        adata,
                        label_key: options.label_key.clone(),
                        domain_key: options.domain_key.clone().filter(|k| adata.obs.get(k).is_ok()),
                        use_raw: options.use_raw,
                        normalize: options.normalize,
                    })
                    .collect();
                let (combined, warnings) = combine_references(&parts, &map)?;
                warnings.iter().for_each(|w| eprintln!("warning: {w}"));
                options = AtlasOptions { label_key: LABEL_COLUMN.into(), domain_key: Some(DATASET_COLUMN.into()), use_raw: false, normalize: false, ..options };
                combined
            };
            let bar = bar(cli.quiet);
            let package = block_on(build_atlas(&r, &options, &dev.device, &mut observe(&bar)))?;
            bar.finish_and_clear();
            package.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
            std::fs::create_dir_all(&out).map_err(|e| SclabelError::InvalidFile { file: out.display().to_string(), reason: format!("can't create: {e}") })?;
            write(&out.join(MATRIX_FILE), &package.matrix)?;
            write(&out.join(MODEL_FILE), &package.model)?;
            write(&out.join("atlas.json"), serde_json::to_string_pretty(&package.manifest).expect("json").as_bytes())?;
            eprintln!(
                "atlas '{}' written to {}: {} cells × {} genes, matrix {} bytes, model {} bytes",
                options.id,
                out.display(),
                package.manifest["n_cells"],
                package.manifest["n_genes"],
                package.matrix.len(),
                package.model.len()
            );
        }
        Command::Info { model } if is_celltypist(&model)? => {
            let m = load_celltypist(&model)?;
            let description: serde_json::Map<String, serde_json::Value> = m.description.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            let info = serde_json::json!({
                "model": "celltypist", "classifier": m.classifier, "n_genes": m.features.len(), "classes": m.classes,
                "with_mean": m.with_mean, "description": description,
            });
            println!("{}", serde_json::to_string_pretty(&info).expect("json"));
        }
        Command::Info { model } => {
            let dev = sclabel::backend::cpu(BackendRequest::Cpu, "info")?;
            let m = load_model(&model, &dev.device)?;
            let info = serde_json::json!({
                "arch": m.arch, "n_genes": m.genes.len(), "classes": m.classes, "input": m.input,
                "provenance": m.provenance, "config": m.config, "metrics": m.metrics.as_ref().map(|x| serde_json::json!({
                    "mode": x.mode, "best_epoch": x.best_epoch, "final_accuracy": x.final_accuracy, "n_train": x.n_train, "epochs_run": x.epochs.len()})),
            });
            println!("{}", serde_json::to_string_pretty(&info).expect("json"));
        }
        Command::Audit {
            input,
            label_key,
            second_label_key,
            exclude_label,
            n_epochs,
            n_layers,
            seed,
            use_raw,
            scale,
            n_top_genes,
            hvg_flavor,
            hvg_batch_key,
            flip_fraction,
            percentile,
            cutoff_conf,
            cutoff_var,
            no_reannotate,
            out,
            annotate_h5ad,
            genes,
            min_counts,
            graph,
            alpha,
            k,
            n_pcs,
        } => {
            let cutoffs = match (cutoff_conf, cutoff_var) {
                (Some(confidence), Some(variability)) => CutoffRule::Fixed { confidence, variability },
                _ => CutoffRule::Simulated { fraction: flip_fraction, percentile },
            };
            let options = AuditOptions {
                label_key,
                second_label_key,
                exclude_labels: exclude_label,
                use_raw,
                scale: match scale {
                    ScaleArg::Cp10k => TargetScale::Cp10k,
                    ScaleArg::Cpm => TargetScale::Cpm,
                },
                hvg: (n_top_genes > 0).then(|| HvgOptions {
                    n_top_genes,
                    flavor: match hvg_flavor {
                        HvgFlavorArg::Seurat => HvgFlavor::Seurat,
                        HvgFlavorArg::SeuratV3 => HvgFlavor::SeuratV3,
                    },
                    batch_key: hvg_batch_key,
                    ..HvgOptions::default()
                }),
                train: TrainOptions { n_epochs, n_layers, seed, ..TrainOptions::default() },
                cutoffs,
                reannotate: !no_reannotate,
                gene_scores: genes.as_ref().map(|_| GeneScoreOptions { min_counts, ..GeneScoreOptions::default() }),
                ..AuditOptions::default()
            };
            let dev = device(cli.backend)?;
            let bar = bar(cli.quiet);
            // Streamed (a block of cells at a time, only the audited genes kept) unless the
            // trainability graph needs the data set whole.
            let (report, obs_names, ad) = match &graph {
                None => {
                    let rows = open_rows(&input, use_raw)?;
                    (block_on(audit_h5ad_rows(&rows, &options, &dev, &mut observe(&bar)))?, rows.obs_names, None)
                }
                Some(_) => {
                    let ad = load_h5ad(&input)?;
                    (block_on(audit_adata(&ad, &options, &dev, &mut observe(&bar)))?, ad.obs_names.clone(), Some(ad))
                }
            };
            bar.finish_and_clear();
            eprintln!("genes: {}", report.gene_selection);
            let count = |c: Category| report.categories.iter().filter(|&&x| x == c).count();
            eprintln!(
                "{} cells audited; cutoffs conf {:.3} var {:.3}; easy-to-learn {}, ambiguous {}, hard-to-learn {}",
                report.cells.len(),
                report.cutoffs.confidence,
                report.cutoffs.variability,
                count(Category::EasyToLearn),
                count(Category::Ambiguous),
                count(Category::HardToLearn)
            );
            if let Some(a) = report.noise_run.as_ref().and_then(|n| n.auroc) {
                eprintln!("simulated-noise run: AUROC of 1 − conf for the flipped cells {a:.3}");
            }
            write_audit(&out, &obs_names, &report)?;
            eprintln!("audit written to {}", out.display());
            if let Some(path) = &annotate_h5ad {
                write_annotated_h5ad(&input, path, &report.anndata_additions(obs_names.len())?)?;
                eprintln!("{} with conf, var, Annotation and corrected_label written to {}", input.display(), path.display());
            }
            if let (Some(path), Some(g)) = (genes, &report.gene_scores) {
                write_gene_scores(&path, g)?;
                let top = |s: &[f32]| GeneScores::top(s, 10).into_iter().map(|i| g.genes[i].as_str()).collect::<Vec<_>>().join(" ");
                eprintln!("top conf_score_high: {}\ntop conf_score_low: {}", top(&g.conf_score_high), top(&g.conf_score_low));
                eprintln!("gene scores written to {}", path.display());
            }
            if let (Some(path), Some(ad)) = (graph, &ad) {
                let pca_options = PcaOptions { n_components: n_pcs, seed, ..PcaOptions::default() };
                let graph_options = ConfGraphOptions { alpha, k, ..ConfGraphOptions::default() };
                let g = block_on(trainability_graph(ad, &report, &pca_options, &graph_options, &dev, &mut observe(&bar)))?;
                bar.finish_and_clear();
                let mut csv = String::from("cell,neighbor,weight,distance\n");
                let c = &g.connectivities;
                for i in 0..c.n_rows {
                    let (idx, w) = c.row(i);
                    let d = g.distances.row(i).1;
                    for ((&j, &w), &d) in idx.iter().zip(w).zip(d) {
                        csv.push_str(&format!(
                            "{},{},{w},{d}\n",
                            csv_field(&ad.obs_names[report.cells[i]]),
                            csv_field(&ad.obs_names[report.cells[j as usize]])
                        ));
                    }
                }
                write(&path, csv.as_bytes())?;
                eprintln!("graph ({} edges, symmetric) written to {}", c.nnz(), path.display());
            }
        }
        Command::Explain { model, input, label_key, target, source, n_samples, n_cells, abs_scale, seed, normalize, use_raw, out, attributions } => {
            let dev = device(cli.backend)?;
            let m = load_model(&model, &dev.device)?;
            let rows = open_rows(&input, use_raw)?;
            let options = ExplainOptions { target, source, n_samples, n_cells, abs_scale, seed, normalize, use_raw, ..ExplainOptions::default() };
            let bar = bar(cli.quiet);
            let labels = rows.obs.get(&label_key)?.to_strings();
            let e = block_on(explain_h5ad_rows(&rows, &m, &labels, &format!("obs column '{label_key}'"), &options, &dev, &mut observe(&bar)))?;
            bar.finish_and_clear();
            e.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
            let top: Vec<&str> = e.ranking.iter().take(10).map(|&g| e.genes[g].as_str()).collect();
            eprintln!("{} cells of '{}' explained; top genes: {}", e.cells.len(), e.target, top.join(" "));
            write_saliency(&out, &e)?;
            if let Some(path) = attributions {
                write_attributions(&path, &rows.obs_names, &e)?;
            }
            eprintln!("saliency written to {}", out.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The core's messages name the problem and the fix (an unknown preset lists them all).
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
