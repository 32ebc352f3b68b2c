// Generated from the core's serde types by ts-rs (src/typescript.rs); do not edit.
// Options are declared resolved (every field present, as results echo them); index.d.ts
// takes them as `Options<T>`, every field optional.

/**
 * scNym's presets (`crate::scnym::config::PRESETS`).
 */
export type ScnymPreset = "default" | "no_new_identity" | "new_identity_discovery" | "no_dan" | "no_ssl";

/**
 * What the caller asks for.
 */
export type BackendRequest = "auto" | "cpu" | "webgpu";

/**
 * What actually runs.
 */
export type Backend = "flex" | "ndarray" | "webgpu";

export type BackendInfo = { requested: BackendRequest, backend: Backend, 
/**
 * GPU adapter name (e.g. "SwiftShader Device (Subzero)"), when known.
 */
adapter: string | null, 
/**
 * Why this backend runs (e.g. the error that made `auto` fall back to the CPU).
 */
reason: string, };

/**
 * Which executor runs a network: burn's (autodiff, kernels of the device's backend) or the host
 * kernels (`nn::gemm`, `host_linear`, `host_mlp`, `scnym::host_net`), faster on CPU backends for
 * the networks they cover. Chosen here only, and recorded in every training and prediction result.
 */
export type Executor = "burn" | "host";

export type Phase = "train" | "predict";

/**
 * One progress event. `loss` / `accuracy` are set at the end of each epoch (reading them
 * every step would stall the GPU).
 */
export type Progress = { phase: Phase, epoch: number, n_epochs: number, step: number, steps_per_epoch: number, cells_done: number, cells_total: number, loss: number | null, accuracy: number | null, };

export type TargetScale = "cpm" | "cp10k";

export type Normalization = { "kind": "raw_counts" } | { "kind": "linear_normalized" } | { "kind": "log_normalized", scale: number | null, } | { "kind": "log2_normalized", scale: number | null, } | { "kind": "scaled" };

/**
 * Result of `detect`, with the evidence, so a UI can show why.
 */
export type NormalizationReport = { normalization: Normalization, min: number, max: number, 
/**
 * Median over cells of Σ expm1(x) (log data) or Σ x (other data).
 */
median_total: number, description: string, };

export type GeneOverlap = { model_genes: number, data_genes: number, shared: number, 
/**
 * shared / model_genes.
 */
fraction: number, 
/**
 * Up to 20 model genes the data lacks, to show the user.
 */
missing_examples: Array<string>, low: boolean, 
/**
 * Which of the data's identifiers matched, and what they are, e.g. "var['feature_name']
 * (gene symbols; the var index holds Ensembl IDs)".
 */
matched_by: string, };

export type Sampling = "sequential" | "shuffle" | "balanced";

export type OptimizerConfig = { "kind": "sgd", momentum: number, } | { "kind": "adam" };

/**
 * Options of the plain-MLP training loop. Defaults are Annotatability's.
 */
export type TrainOptions = { n_epochs: number, batch_size: number, lr: number, optimizer: OptimizerConfig, sampling: Sampling, drop_last: boolean, n_layers: number, seed: number, 
/**
 * On CPU backends with SGD, train the network on the host (`HostMlp`: the first layer applied
 * to the sparse rows, direct matrix products, no autodiff graph) instead of with burn's
 * autodiff: the same maths, several times faster. `false` forces burn's path (comparisons).
 */
host_network: boolean, };

export type EpochStats = { epoch: number, 
/**
 * Mean cross-entropy over the epoch's minibatches (before each step's update).
 */
loss: number, 
/**
 * Fraction of the epoch's sampled cells the model classified right (before each update).
 */
accuracy: number, };

export type HoldoutOptions = { 
/**
 * obs column with the cell-type labels.
 */
label_key: string, 
/**
 * Cells with these labels are left out entirely (e.g. `unlabeled_QCfail`). Cells labelled
 * `Unlabeled` are always left out.
 */
exclude_labels: Array<string>, 
/**
 * Use `.raw` instead of X (for files whose X is scaled).
 */
use_raw: boolean, 
/**
 * Log scale the data are converted to before training.
 */
scale: TargetScale, 
/**
 * Fraction of labelled cells held out for testing.
 */
test_fraction: number, train: TrainOptions, };

export type HoldoutReport = { backend: BackendInfo, normalization: NormalizationReport, class_names: Array<string>, n_genes: number, n_train: number, n_test: number, history: Array<EpochStats>, test_accuracy: number, 
/**
 * Accuracy of always predicting the most frequent training class, on the test cells.
 */
majority_accuracy: number, 
/**
 * Per test cell: row in the data set, true and predicted class index.
 */
test_rows: Array<number>, test_true: Array<number>, test_predicted: Array<number>, 
/**
 * The options after defaults were filled in.
 */
options: HoldoutOptions, };

export type OptimizerName = "adadelta" | "adam" | "adamw" | "sgd";

/**
 * Augmentation of labelled cells before MixUp (scNym's `AUGMENTATION_SCHEMES`, the two we carry).
 */
export type Augmentation = "log1p_drop" | "none";

export type UnsupCriterion = "mse" | "ce";

/**
 * Architecture (scNym's `model_kwargs`).
 */
export type ModelKwargs = { n_hidden: number, n_hidden_init: number, 
/**
 * Hidden blocks after the first: the default 2 gives three hidden Linear layers.
 */
n_layers: number, init_dropout: number, residual: boolean, };

/**
 * Semi-supervised and adversarial settings (scNym's `ssl_kwargs`).
 */
export type SslKwargs = { augment_pseudolabels: boolean, augment: Augmentation, unsup_criterion: UnsupCriterion, n_augmentations: number, T: number, ramp_epochs: number, burn_in_epochs: number, dan_criterion: boolean, dan_ramp_epochs: number, dan_max_weight: number, dan_burn_in_epochs: number, min_epochs: number | null, pseudolabel_min_confidence: number, dan_use_conf_pseudolabels: boolean, dan_scale_loss_pseudoconf: boolean, decay_coef: number, 
/**
 * fix: scNym's `no_ssl` sets this but never reads it; here it overrides the top-level
 * `unsup_max_weight` when present.
 */
unsup_max_weight: number | null, };

/**
 * The whole training configuration. Defaults are scNym's `default` preset.
 */
export type ScnymConfig = { n_epochs: number, 
/**
 * Stop when this many epochs pass without a new best validation loss (`None`: never).
 */
patience: number | null, lr: number, optimizer_name: OptimizerName, weight_decay: number, batch_size: number, balanced_classes: boolean, weighted_classes: boolean, mixup_alpha: number, unsup_max_weight: number, unsup_mean_teacher: boolean, model_kwargs: ModelKwargs, ssl_kwargs: SslKwargs, 
/**
 * Fraction of labelled cells held out for the final evaluation (scNym: 10%).
 */
holdout_fraction: number, 
/**
 * Fraction of the rest used for model selection (scNym: 10%).
 */
model_selection_fraction: number, seed: number, 
/**
 * Free text carried into the bundle (scNym's preset descriptions).
 */
description: string | null, };

export type TransferOptions = { 
/**
 * obs column with cell types; `Unlabeled` marks the cells to transfer labels to.
 */
label_key: string, 
/**
 * obs column with the domain (batch, chemistry, donor) of each cell, for the adversary.
 */
domain_key: string | null, 
/**
 * obs column with `train` / `test` / `val` per labelled cell (scNym's `scNym_split`).
 */
split_key: string | null, 
/**
 * Labels treated like `Unlabeled`... but left out of training entirely (e.g. `unlabeled_QCfail`).
 */
exclude_labels: Array<string>, preset: ScnymPreset, 
/**
 * scNym-style config (JSON object) merged into a copy of the preset.
 */
config: ScnymConfig | null, 
/**
 * Convert whatever scale X is on (counts, ln(CP10k+1), …) to ln(CPM+1). When false, data
 * that isn't ln(CPM+1) is refused with a message saying so (scNym's checks).
 */
normalize: boolean, 
/**
 * Use `.raw` instead of X.
 */
use_raw: boolean, 
/**
 * Use the query's `.raw` instead of its X; `None` = as `use_raw`. A reference and a query often
 * differ: an atlas with scaled X and log-normalised `.raw` against a query of raw counts.
 */
query_use_raw: boolean | null, 
/**
 * `normalize` for the query; `None` = as `normalize`. An atlas reference is already ln(CPM+1)
 * over all of its source's genes (re-normalising its gene subset would change it), while a
 * user's query often holds counts.
 */
query_normalize: boolean | null, 
/**
 * At most this many query cells take part in training as the unlabelled set: a seeded
 * uniform subsample (from the config's seed) when the query has more, said in the warnings.
 * MixMatch and the adversary see a few thousand unlabelled cells per epoch, so a large
 * subsample loses nothing while a 1M-cell query would not fit in a tab; every cell is still
 * predicted afterwards. `None`: every query cell.
 */
max_query_cells: number | null, 
/**
 * Train on these genes only (those of them the data have; with a query, those both have),
 * e.g. highly variable genes; `None`: every gene (every shared gene).
 */
genes: Array<string> | null, };

/**
 * Options of a prediction, as every door takes them (JS `predictScnym`, `sclabel predict`).
 */
export type PredictOptions = { 
/**
 * Convert X from whatever scale it is on to ln(CPM+1); otherwise input that is not ln(CPM+1)
 * is refused, saying what it is.
 */
normalize: boolean, 
/**
 * Use `.raw` instead of X.
 */
use_raw: boolean, 
/**
 * Cells whose confidence is below this get the label `Unassigned` (`None`: always the argmax).
 */
unassigned_below: number | null, 
/**
 * Also return the embedding (cells × n_hidden).
 */
embedding: boolean, batch_size: number, 
/**
 * An `.h5ad` predicted without being loaded: the var column with the gene names (a loaded
 * data set has its own).
 */
var_names: string | null, };

export type PredictReport = { overlap: GeneOverlap, normalization: NormalizationReport, warnings: Array<string>, };

/**
 * How the query is over-clustered (CellTypist's defaults).
 */
export type OverClusterOptions = { 
/**
 * Leiden's resolution. `None`: CellTypist's for the cell count — 5 below 5,000 cells, 10
 * below 20,000, 15 below 40,000, 20 below 100,000, 25 below 200,000, else 30.
 */
resolution: number | null, 
/**
 * Highly variable genes the graph is built on.
 */
n_top_genes: number, 
/**
 * Principal components.
 */
n_pcs: number, 
/**
 * Neighbours per cell, the cell itself counted (scanpy's `n_neighbors`).
 */
n_neighbors: number, seed: number, };

/**
 * Options of a CellTypist prediction (celltypist.annotate's arguments), as every door takes them.
 */
export type CelltypistOptions = { 
/**
 * "prob match" threshold (CellTypist's `p_thres`).
 */
p_thres: number, 
/**
 * Use `.raw` instead of X.
 */
use_raw: boolean, 
/**
 * Also vote: each cluster of an over-clustering takes its most common label
 * (`majority_voting`).
 */
majority_voting: boolean, 
/**
 * An obs column whose values are the clusters to vote in (CellTypist's `over_clustering`);
 * otherwise the query is over-clustered (`over_cluster`).
 */
over_clustering: string | null, over_cluster: OverClusterOptions, 
/**
 * A cluster whose most common label has fewer than this share of its cells is labelled
 * `Heterogeneous` (`min_prop`).
 */
min_prop: number, };

export type ExplainOptions = { 
/**
 * Class whose logit is explained; the cells explained are those labelled with it.
 */
target: string, 
/**
 * Reference cells: a class name, or `None` / `"all"` for every cell not of the target class.
 */
source: string | null, 
/**
 * Reference draws (with one α each) per cell; scNym's `n_batches`.
 */
n_samples: number, 
/**
 * Target cells per batch (capped so a batch of genes stays within the chunk limit).
 */
batch_size: number, 
/**
 * scNym's |x − r| instead of the signed difference (then attributions no longer add up to
 * the logit difference, and a gene can't be credited with pushing away from the class).
 */
abs_scale: boolean, 
/**
 * Explain a seeded random subset of this many target cells (all when `None` or larger).
 */
n_cells: number | null, seed: number, 
/**
 * Convert X to ln(CPM+1) first (as prediction's `normalize`); otherwise other scales are refused.
 */
normalize: boolean, 
/**
 * Use `.raw` instead of X.
 */
use_raw: boolean, };

/**
 * How stored values are kept.
 */
export type ValueEncoding = "q8" | "f16" | "f32";

/**
 * What the atlas is and how it is built. Descriptive fields go into the manifest as given.
 */
export type AtlasOptions = { id: string, name: string | null, species: string | null, tissue: string | null, 
/**
 * Licence and provenance of the source data (they travel with the atlas).
 */
license: string | null, source: string | null, 
/**
 * Label → Cell Ontology ID, where known.
 */
ontology: { [key in string]: string }, label_key: string, domain_key: string | null, use_raw: boolean, 
/**
 * Convert the reference to ln(CPM+1) first (otherwise it must already be).
 */
normalize: boolean, max_cells_per_class: number | null, values: ValueEncoding, 
/**
 * scNym training of the shipped model (preset + config keys, as `trainScnym`).
 */
preset: ScnymPreset, config: ScnymConfig | null, seed: number, };

/**
 * Fine-tuning an atlas's model on a query (scNym's atlas → target path): what a caller may
 * choose, with the defaults every door uses (JS `fineTuneAtlas`, `sclabel train --atlas`). The
 * atlas itself fixes the label and domain columns, and its stored ln(CPM+1) values are taken as
 * they are.
 */
export type AtlasFineTuneOptions = { 
/**
 * scNym preset of the fine-tuning; default as `trainScnym`'s, `new_identity_discovery` (a
 * user's query may hold cell types the atlas lacks).
 */
preset: ScnymPreset, 
/**
 * scNym config keys merged into a copy of the preset.
 */
config: ScnymConfig | null, 
/**
 * Bring the query to the atlas's ln(CPM+1) from whatever scale it is detected on (default
 * true: a query must match the atlas's scale, and the report says what was found).
 */
normalize: boolean, 
/**
 * Use the query's `.raw` instead of its X.
 */
use_raw: boolean, 
/**
 * Atlas labels to leave out of training.
 */
exclude_labels: Array<string>, 
/**
 * As `TransferOptions::max_query_cells`.
 */
max_query_cells: number | null, };

export type HvgFlavor = "seurat" | "seurat_v3";

export type HvgOptions = { flavor: HvgFlavor, 
/**
 * How many genes to keep (all of them when the data have no more).
 */
n_top_genes: number, 
/**
 * obs column whose values are the batches (optional).
 */
batch_key: string | null, 
/**
 * Mean-expression bins for `seurat`.
 */
n_bins: number, 
/**
 * Loess span for `seurat_v3`.
 */
span: number, };

/**
 * How the trusted / untrusted cutoffs are found.
 */
export type CutoffRule = { "kind": "simulated", fraction: number, percentile: number, } | { "kind": "fixed", confidence: number, variability: number, };

/**
 * Thresholds of the "easy-to-learn" category.
 */
export type EasyThresholds = { confidence: number, variability: number, };

/**
 * Thresholds that separate trusted from untrusted cells.
 */
export type Cutoffs = { confidence: number, variability: number, };

/**
 * A cell's category (Annotatability's PBMC notebook). One spelling everywhere — serde, the JS
 * result, the CLI's CSV, the exported obs column: `easy-to-learn`, `ambiguous`, `hard-to-learn`.
 */
export type Category = "easy-to-learn" | "ambiguous" | "hard-to-learn";

export type GeneScoreOptions = { 
/**
 * Exponent of the confidence weights in `conf_score_high`.
 */
power: number, 
/**
 * Exponent of the (1 − confidence) weights in `conf_score_low`.
 */
power_low: number, 
/**
 * Genes whose column sum (of the matrix as given, usually log-normalised) is below this are
 * left out (scanpy's `filter_genes(min_counts=…)`).
 */
min_counts: number, };

export type AuditOptions = { 
/**
 * obs column with the annotations to audit.
 */
label_key: string, 
/**
 * Optional second label column recorded alongside (`follow_train_dyn_two_lables`): the
 * network trains on `label_key` and the probability of this column's label is followed too.
 * Its classes must be classes of `label_key`.
 */
second_label_key: string | null, 
/**
 * Cells with these labels are not audited (e.g. `unlabeled_QCfail`); `Unlabeled` never is.
 */
exclude_labels: Array<string>, use_raw: boolean, 
/**
 * Annotatability expects ln(CP10k + 1).
 */
scale: TargetScale, 
/**
 * Genes the networks train on: highly variable genes of the audited cells, selected after
 * normalising over all genes (Annotatability's notebooks: normalise → log → top 2000 HVGs →
 * train). `None`, or data with no more genes than `n_top_genes`: every gene.
 */
hvg: HvgOptions | null, 
/**
 * Training of every network (dynamics, cutoff run, re-annotation). Defaults are
 * Annotatability's: SGD lr 1e-3 momentum 0.9, balanced sampling, batch 256, 3 layers,
 * 50 epochs (the package's README and cutoff function; `follow_training_dyn` defaults to 100).
 */
train: TrainOptions, cutoffs: CutoffRule, easy: EasyThresholds, 
/**
 * Re-annotate untrusted cells with a network trained on the trusted ones.
 */
reannotate: boolean, 
/**
 * Trainability gene scores (`None`: skip).
 */
gene_scores: GeneScoreOptions | null, };
