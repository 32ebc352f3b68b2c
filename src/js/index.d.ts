// Types of sclabel's public JS API. Options and results are the core's serde form (snake_case).

export type BackendRequest = 'auto' | 'webgpu' | 'cpu';

export interface BackendInfo {
  requested: BackendRequest;
  /** What actually runs: 'webgpu', or the CPU backend ('flex' | 'ndarray'). */
  backend: 'webgpu' | 'flex' | 'ndarray';
  adapter: string | null;
  /** Why this backend runs (e.g. why 'auto' fell back to the CPU). */
  reason: string;
}

export interface Progress {
  phase: 'train' | 'predict';
  epoch: number;
  n_epochs: number;
  step: number;
  steps_per_epoch: number;
  cells_done: number;
  cells_total: number;
  /** Set at the end of each epoch. */
  loss: number | null;
  accuracy: number | null;
}

export interface RunControls {
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
}

export type OptimizerConfig = { kind: 'sgd'; momentum: number } | { kind: 'adam' };

export interface TrainOptions {
  epochs?: number;
  batch_size?: number;
  learning_rate?: number;
  optimizer?: OptimizerConfig;
  sampling?: 'sequential' | 'shuffle' | 'balanced';
  drop_last?: boolean;
  /** Linear layers of the plain MLP: 3, 4 or 5. */
  n_layers?: number;
  seed?: number;
  /** CPU backend with SGD: train on host kernels (sparse first layer; default true; same maths). */
  host_network?: boolean;
}

export interface HoldoutOptions {
  label_key?: string;
  exclude_labels?: string[];
  use_raw?: boolean;
  /** The scale the data are brought to (from counts or any log scale) before training: ln(CP10k+1) (default, Annotatability's) or ln(CPM+1). */
  scale?: 'cpm' | 'cp10k';
  test_fraction?: number;
  train?: TrainOptions;
}

export interface NormalizationReport {
  normalization:
    | { kind: 'raw_counts' }
    | { kind: 'linear_normalized' }
    | { kind: 'log_normalized'; scale: number | null }
    | { kind: 'log2_normalized'; scale: number | null }
    | { kind: 'scaled' };
  min: number;
  max: number;
  median_total: number;
  description: string;
}

export interface EpochStats { epoch: number; loss: number; accuracy: number }

export interface HoldoutReport {
  backend: BackendInfo;
  normalization: NormalizationReport;
  class_names: string[];
  n_genes: number;
  n_train: number;
  n_test: number;
  history: EpochStats[];
  test_accuracy: number;
  majority_accuracy: number;
  test_rows: number[];
  test_true: number[];
  test_predicted: number[];
  options: Required<HoldoutOptions>;
}

export interface DatasetSummary {
  n_obs: number;
  n_vars: number;
  nnz: number;
  has_raw: boolean;
  obs: { name: string; kind: 'categorical' | 'string' | 'numeric' | 'bool'; categories: [string, number][] | null }[];
  normalization: NormalizationReport | null;
}

/** A data set held by the engine (in its worker). Pass it back to the client's methods. */
export interface DatasetHandle {
  readonly kind: 'dataset';
  readonly id: number;
  readonly name: string | null;
  /** 'h5ad' | 'zarr' for loaded files, 'atlas' for an atlas's reference, null for derived or synthetic data sets. */
  readonly format: 'h5ad' | 'zarr' | 'atlas' | null;
  readonly nObs: number;
  readonly nVars: number;
  readonly summary: DatasetSummary;
}

/** scNym's configuration keys (all optional; merged into a copy of the preset). */
export interface ScnymConfig {
  n_epochs?: number;
  patience?: number | null;
  lr?: number;
  optimizer_name?: 'adadelta' | 'adam' | 'adamw' | 'sgd';
  weight_decay?: number;
  batch_size?: number;
  balanced_classes?: boolean;
  weighted_classes?: boolean;
  mixup_alpha?: number;
  unsup_max_weight?: number;
  unsup_mean_teacher?: boolean;
  model_kwargs?: { n_hidden?: number; n_hidden_init?: number; n_layers?: number; init_dropout?: number; residual?: boolean };
  ssl_kwargs?: {
    augment_pseudolabels?: boolean; augment?: 'log1p_drop' | 'none'; unsup_criterion?: 'mse' | 'ce'; n_augmentations?: number;
    T?: number; ramp_epochs?: number; burn_in_epochs?: number; dan_criterion?: boolean; dan_ramp_epochs?: number;
    dan_max_weight?: number; dan_burn_in_epochs?: number; min_epochs?: number | null; pseudolabel_min_confidence?: number;
    dan_use_conf_pseudolabels?: boolean; dan_scale_loss_pseudoconf?: boolean; decay_coef?: number; unsup_max_weight?: number | null;
  };
  holdout_fraction?: number;
  model_selection_fraction?: number;
  seed?: number;
  description?: string | null;
  /** CPU backend: the whole training step on the host, first layer from the stored values only (default true; same maths). `sparse_first_layer` is read as an alias. */
  host_network?: boolean;
}

export type ScnymPreset = 'default' | 'no_new_identity' | 'new_identity_discovery' | 'no_dan' | 'no_ssl';

export interface TransferOptions {
  label_key?: string;
  domain_key?: string | null;
  split_key?: string | null;
  exclude_labels?: string[];
  /** Default 'new_identity_discovery' (scNym's API default). */
  preset?: ScnymPreset;
  config?: ScnymConfig | null;
  /** Convert X to ln(CPM+1) from whatever scale it is on; otherwise non-ln(CPM+1) input is an error. */
  normalize?: boolean;
  use_raw?: boolean;
  /** Whether the query's `.raw` is used; default as `use_raw` (e.g. false for a query of counts). */
  query_use_raw?: boolean | null;
  /** Whether the query is converted to ln(CPM+1); default as `normalize` (an atlas reference is already ln(CPM+1), a query may hold counts). */
  query_normalize?: boolean | null;
  /** At most this many query cells train as the unlabelled set (a seeded subsample, said in the model's warnings); default 50000, null = all. Every cell is still predicted by `predictScnym`. */
  max_query_cells?: number | null;
  /** Train on these genes only (those the data have; with a query, those both have), e.g. highly variable genes; default every (shared) gene. */
  genes?: string[] | null;
}

/** What an atlas is and where its data come from (they travel with it). */
export interface AtlasDescription {
  id: string;
  name?: string | null;
  species?: string | null;
  tissue?: string | null;
  license?: string | null;
  source?: string | null;
}

export interface AtlasBuildOptions extends AtlasDescription {
  /** Label → Cell Ontology ID. */
  ontology?: Record<string, string>;
  label_key?: string;
  domain_key?: string | null;
  use_raw?: boolean;
  normalize?: boolean;
  max_cells_per_class?: number | null;
  /** Stored values: 'q8' (default), 'f16' or 'f32'. */
  values?: 'q8' | 'f16' | 'f32';
  /** Default 'no_new_identity'. */
  preset?: ScnymPreset;
  config?: ScnymConfig | null;
  seed?: number;
}

export interface BuiltAtlas { manifest: AtlasManifest; matrix: Uint8Array; model: Uint8Array; warnings: string[] }

export interface OpenedAtlas { manifest: AtlasManifest; model: ModelHandle; reference: DatasetHandle | null }

/** The core's AtlasFineTuneOptions (src/atlas/open.rs): the same defaults as `sclabel train --atlas`. */
export interface FineTuneAtlasOptions {
  /** Convert the query to the atlas's ln(CPM+1) from whatever scale it is detected on (default true). */
  normalize?: boolean;
  /** Use the query's `.raw` (default false). */
  use_raw?: boolean;
  /** Default 'new_identity_discovery', as trainScnym (a query may hold cell types the atlas lacks). */
  preset?: ScnymPreset;
  config?: ScnymConfig | null;
  /** Atlas labels left out of training. */
  exclude_labels?: string[];
  /** At most this many query cells train (a seeded subsample; default 50,000; null: all). */
  max_query_cells?: number | null;
}

export interface ScnymPredictOptions {
  normalize?: boolean;
  use_raw?: boolean;
  /** Cells less confident than this are labelled 'Unassigned'. */
  unassigned_below?: number | null;
  embedding?: boolean;
  batch_size?: number;
  /** When an `.h5ad` is predicted directly: the var column with the gene names (a loaded data set has its own, see `load`). */
  var_names?: string | null;
}

export interface GeneOverlap {
  model_genes: number; data_genes: number; shared: number; fraction: number; missing_examples: string[]; low: boolean;
  /** Which of the data's identifiers matched the model's genes, e.g. "var['feature_name'] (gene symbols; the var index holds Ensembl IDs and shares 0 genes)". */
  matched_by: string;
}

/** Which executor ran a network (the core's `backend::Executor`). */
export type Executor = 'host' | 'burn';

export interface ScnymPrediction {
  cells: number;
  classes: string[];
  /** Per cell: a class name, or 'Unassigned' (adata.obs['scNym']). */
  scNym: string[];
  /** Max probability per cell (adata.obs['scNym_confidence']). */
  scNym_confidence: Float32Array;
  /** cells × classes, row-major, columns in `classes` order. */
  scNym_probabilities: Float32Array;
  /** Index into `classes` of each cell's most probable class. */
  predicted: Uint32Array;
  /** cells × embeddingDim, row-major (adata.obsm['X_scnym']); null when not asked for. */
  X_scnym: Float32Array | null;
  embeddingDim: number;
  report: { overlap: GeneOverlap; normalization: NormalizationReport; warnings: string[] };
  backend: BackendInfo;
  /** Which executor ran the network: the host kernels (CPU backends) or burn's (WebGPU, and what the host kernels do not cover). */
  executor: Executor;
  /** The cells' names, when an `.h5ad` source was predicted directly (not a loaded data set). */
  obsNames?: string[];
}

/** A model held by the engine. */
export interface ModelHandle {
  readonly kind: 'model';
  readonly id: number;
  readonly classes: string[];
  readonly genes: string[];
  /** Warnings from training (e.g. a class with a single cell). */
  readonly warnings: string[];
  readonly info: { arch: Record<string, unknown>; input: { transform: string; target_total: number }; provenance: Record<string, unknown>; config: ScnymConfig | null; metrics: Record<string, unknown> | null };
}

/** Options of `audit` (Annotatability); every field optional, defaults as the package's. */
export interface AuditOptions {
  label_key?: string;
  /** A second label column whose probabilities are followed too (classes of `label_key`). */
  second_label_key?: string | null;
  exclude_labels?: string[];
  use_raw?: boolean;
  /** The scale the data are brought to (from counts or any log scale) before training: ln(CP10k+1) (default, Annotatability's) or ln(CPM+1). */
  scale?: 'cpm' | 'cp10k';
  /**
   * Genes the networks train on: the highly variable genes of the audited cells, selected after
   * normalising over all genes (default { flavor: 'seurat', n_top_genes: 2000 }, as
   * Annotatability's notebooks); null trains on every gene. `seurat_v3` needs raw counts.
   */
  hvg?: { flavor?: 'seurat' | 'seurat_v3'; n_top_genes?: number; batch_key?: string | null; n_bins?: number; span?: number } | null;
  train?: HoldoutOptions['train'];
  /** Simulated label noise (default { kind: 'simulated', fraction: 0.1, percentile: 25 }) or fixed cutoffs. */
  cutoffs?: { kind: 'simulated'; fraction: number; percentile: number } | { kind: 'fixed'; confidence: number; variability: number };
  /** Thresholds of "easy-to-learn" (default 0.95 / 0.15). */
  easy?: { confidence?: number; variability?: number };
  reannotate?: boolean;
  gene_scores?: { power?: number; power_low?: number; min_counts?: number } | null;
}

export interface AuditResult {
  /** Rows of the dataset that were audited; every per-cell array is aligned with it. */
  cells: Uint32Array;
  labels: string[];
  /** Mean probability of the annotated label over the epochs. */
  conf: Float32Array;
  /** Population standard deviation of it. */
  var: Float32Array;
  /** 1 = trusted (conf or var above its cutoff). */
  trusted: Uint8Array;
  category: Array<'easy-to-learn' | 'ambiguous' | 'hard-to-learn'>;
  /** Given label for trusted cells, a re-annotation network's label for untrusted ones; null when off. */
  corrected_label: string[] | null;
  conf_second?: Float32Array;
  var_second?: Float32Array;
  cutoffs: { confidence: number; variability: number };
  /** The simulated-noise run: positions (into `cells`) of flipped cells, AUROC of 1 − conf for them. */
  noise_run: { flipped: number[]; auroc: number | null } | null;
  gene_scores: { genes: string[]; conf_score_high: Float32Array; conf_score_low: Float32Array; conf_score_mid: Float32Array } | null;
  class_names: string[];
  history: Array<{ epoch: number; loss: number; accuracy: number }>;
  backend: BackendInfo;
  /** Which executor trained the networks. */
  executor: Executor;
  normalization: NormalizationReport;
  /** The genes the networks trained on (after highly-variable-gene selection). */
  genes: string[];
  /** How they were chosen, e.g. "2000 highly variable genes of 32738 (seurat on ln(CP10k+1), 2638 cells)". */
  gene_selection: string;
}

export interface ExplainOptions {
  /** The class whose logit is explained (required). */
  target: string;
  /** Reference class; null / 'all' = all other cells. */
  source?: string | null;
  n_samples?: number;
  batch_size?: number;
  /** scNym's |x − x′| scaling instead of the signed difference. */
  abs_scale?: boolean;
  n_cells?: number | null;
  seed?: number;
  normalize?: boolean;
  use_raw?: boolean;
}

export interface Explanation {
  genes: string[];
  cells: Uint32Array;
  /** cells × genes, row-major. */
  attributions: Float32Array;
  /** Mean attribution per gene. */
  saliency: Float32Array;
  /** Gene indices, highest saliency first. */
  ranking: Uint32Array;
  target: string;
  n_samples: number;
  abs_scale: boolean;
  warnings: string[];
  backend: BackendInfo;
}

/** Anything `load` reads: a file, bytes, a URL, a Zarr directory or store (and a path in Node). */
export type DataSource =
  | Blob | ArrayBuffer | ArrayBufferView | string | URL
  | FileSystemDirectoryHandle | FileList | File[]
  | { get(key: string): Promise<Uint8Array | undefined> };

export type BundleSource = ArrayBuffer | ArrayBufferView | Blob | string | URL;

export interface LoadProgress { phase: 'loading'; done: number; total: number }

/** obs columns and obsm matrices to write into a user's .h5ad (`exportH5ad`). */
export interface H5adAdditions {
  obs?: Record<string,
    | { categorical: (string | null)[] }
    | { categorical_codes: { categories: string[]; codes: Int32Array | number[] } }
    | { f32: Float32Array | number[] } | { i32: Int32Array | number[] } | { bool: boolean[] | Uint8Array }>;
  obsm?: Record<string, { n_cols: number; values: Float32Array | number[] }>;
}

export interface AtlasEntry {
  id: string;
  name?: string;
  /** A model bundle (loadAtlas); absolute after loadRegistry (relative ones resolve against the registry's URL). */
  url?: string;
  /** An atlas package's atlas.json (openAtlas): instant annotation and fine-tuning; resolved like `url`. */
  manifest?: string;
  /** The atlas's version: the cache key, so a new version is fetched once and an old one dropped. */
  version: string;
  bundle_format_version: number;
  /** Hex SHA-256 of the bundle; checked after download when given. */
  sha256?: string;
  species?: string;
  tissue?: string;
  classes?: string[];
  [extra: string]: unknown;
}

/** An atlas package's atlas.json (`sclabel atlas build`). */
export interface AtlasManifest extends AtlasDescription {
  format: 'sclabel-atlas';
  format_version: number;
  label_key: string;
  domain_key: string | null;
  domains: string[];
  classes: { label: string; cells: number; ontology_id: string | null }[];
  n_cells: number;
  n_genes: number;
  nnz: number;
  input: 'ln(CPM+1)';
  values: 'q8' | 'f16' | 'f32';
  training: { preset: string; metrics: Record<string, unknown> | null };
  files: {
    matrix: { path: string; bytes: number; sha256: string; format: string; format_version: number };
    model: { path: string; bytes: number; sha256: string; bundle_format_version: number };
  };
  [extra: string]: unknown;
}

export interface Registry { format: 'sclabel-registry'; version?: number; atlases: AtlasEntry[] }

export interface OpenOptions {
  backend?: BackendRequest;
  /** Run in a Web Worker (default in browsers; Node always runs in-process). */
  worker?: boolean;
  /** Where the .wasm is, when a bundler moved it. */
  wasm?: string | URL | Response | BufferSource | WebAssembly.Module;
  /**
   * Bytes the module's memory may reach before work whose data would pass it is refused with
   * `too_large` (a message saying what is too big and what to do) instead of crashing the page.
   * Default and most: 4 GiB minus 512 MiB of headroom.
   */
  memoryLimit?: number;
}

export interface Sclabel {
  /** Which backend runs and why (e.g. why 'auto' fell back to the CPU). */
  readonly backend: BackendInfo;
  /**
   * `varNames`: the var column that holds the gene names (scanpy's `gene_symbols`, e.g.
   * CELLxGENE's 'feature_name'); the index stays available. Without it, gene matching (a model's
   * genes, reference ∩ query) already uses whichever of var's identifier columns shares the most
   * genes, and says which (`report.overlap.matched_by`).
   * `genes`: keep only these genes of X (e.g. a model's or a reference's genes): an `.h5ad` is
   * read a block of cells at a time and matched by whichever var identifier column shares the
   * most; an AnnData-Zarr store a chunk at a time, matched by the var index. Memory is the kept
   * matrix, and normalisation still uses each cell's totals over all of its genes, so results
   * equal those of the whole file. `.raw` keeps the same genes.
   */
  load(source: DataSource, options?: { name?: string; format?: 'auto' | 'h5ad' | 'zarr' | 'zarr-zip'; varNames?: string; genes?: string[]; onProgress?: (p: LoadProgress) => void; signal?: AbortSignal }): Promise<DatasetHandle>;
  synthetic(spec?: { nCells?: number; nGenes?: number; nClasses?: number; seed?: number }): Promise<DatasetHandle>;
  subset(dataset: DatasetHandle, rows: ArrayLike<number>): Promise<DatasetHandle>;
  withObs(dataset: DatasetHandle, column: string, values: string[]): Promise<DatasetHandle>;
  obs(dataset: DatasetHandle, column: string): Promise<(string | null)[]>;
  obsNames(dataset: DatasetHandle): Promise<string[]>;
  varNames(dataset: DatasetHandle): Promise<string[]>;
  trainHoldout(dataset: DatasetHandle, options?: HoldoutOptions, controls?: RunControls): Promise<HoldoutReport>;
  /**
   * `reference` and `query`: loaded data sets, or `.h5ad` files themselves (File / Blob, bytes, a
   * path in Node; both files then), read a block of cells at a time and never loaded: the
   * reference's training genes are held compactly (6 bytes per stored value), so a 1M-cell
   * reference over 2,000 genes (`options.genes`) trains in a tab. The same model either way.
   * (In the package's worker, the default; without one a page reads a `Blob` whole.)
   */
  trainScnym(reference: DatasetHandle, query?: DatasetHandle | null, options?: TransferOptions, controls?: RunControls): Promise<ModelHandle>;
  trainScnym(reference: Blob | ArrayBuffer | ArrayBufferView | string, query?: Blob | ArrayBuffer | ArrayBufferView | string | null, options?: TransferOptions, controls?: RunControls): Promise<ModelHandle>;
  /**
   * `dataset`: a loaded data set, or an `.h5ad` itself (File / Blob, bytes, a path in Node), which
   * is then read a block of cells at a time and never held whole: a file too big to load predicts
   * in the memory of the model's genes for one block plus the per-cell outputs.
   */
  predictScnym(model: ModelHandle, dataset: DatasetHandle | Blob | ArrayBuffer | ArrayBufferView | string, options?: ScnymPredictOptions, controls?: RunControls): Promise<ScnymPrediction>;
  /** Annotatability's audit of a loaded data set, or of an `.h5ad` read a block of cells at a time (only the audited genes kept). */
  audit(dataset: DatasetHandle | Blob | ArrayBuffer | ArrayBufferView | string, options?: AuditOptions, controls?: RunControls): Promise<AuditResult>;
  /**
   * Gene attributions for the cells labelled `options.target` in `labelKey` (an obs column, or one
   * label per cell, e.g. a prediction's `scNym`). An `.h5ad` source is read a block of cells at a
   * time; only the explained cells and at most 10,000 reference cells (a seeded sample) are kept.
   */
  explainScnym(model: ModelHandle, dataset: DatasetHandle | Blob | ArrayBuffer | ArrayBufferView | string, labelKey: string | (string | null)[], options: ExplainOptions, controls?: RunControls): Promise<Explanation>;
  saveModel(model: ModelHandle): Promise<Uint8Array>;
  loadModel(source: BundleSource, options?: { cache?: string }): Promise<ModelHandle>;
  loadAtlas(entry: AtlasEntry): Promise<ModelHandle>;
  /**
   * An atlas package from its atlas.json (URL, a path in Node, or `{ manifest }`): the model for
   * instant annotation and the preconverted reference (unless `reference: false`) to train with.
   */
  openAtlas(source: string | URL | { manifest: string | URL }, options?: { reference?: boolean; genes?: string[] }): Promise<OpenedAtlas>;
  /** `sclabel atlas build` on a loaded data set (store manifest as atlas.json, the bytes under manifest.files). */
  buildAtlas(dataset: DatasetHandle, options: AtlasBuildOptions, controls?: RunControls): Promise<BuiltAtlas>;
  /** As trainScnym, from `pretrained`'s weights (genes and classes matched by name; the rest is in the model's warnings). */
  fineTuneScnym(pretrained: ModelHandle, reference: DatasetHandle, query?: DatasetHandle | null, options?: TransferOptions, controls?: RunControls): Promise<ModelHandle>;
  /** scNym's atlas → target path: the atlas model fine-tuned on its reference (labelled) and `query` (unlabelled). */
  fineTuneAtlas(atlas: OpenedAtlas, query: DatasetHandle, options?: FineTuneAtlasOptions, controls?: RunControls): Promise<ModelHandle>;
  importScnym(weights: BundleSource, genes: string[], classes: string[]): Promise<ModelHandle>;
  /** The user's .h5ad with the additions written in (a Blob that refers to their file where it can; see docs/big-files.md). */
  exportH5ad(dataset: DatasetHandle, additions: H5adAdditions): Promise<Blob>;
  memoryUsage(): Promise<{ wasmBytes: number }>;
  free(handle: DatasetHandle | ModelHandle): Promise<void>;
  close(): void;
}

/** Errors thrown by sclabel carry a stable `code`. */
export interface SclabelError extends Error {
  code: 'invalid_file' | 'unsupported_layout' | 'column_not_found' | 'invalid_values' | 'shape_mismatch' | 'genes'
    | 'labels' | 'invalid_option' | 'backend' | 'cancelled' | 'too_large' | 'crashed' | 'worker_failed' | 'closed' | 'unsupported_version' | 'internal';
}

export function open(options?: OpenOptions): Promise<Sclabel>;
export function predictionAdditions(prediction: ScnymPrediction): H5adAdditions;
export function auditAdditions(audit: AuditResult, nObs: number): H5adAdditions;
export function toCsv(columns: Record<string, ArrayLike<unknown>>, index?: ArrayLike<string>): string;
/** Vitessce's cell-sets JSON (obsSets 0.1.3). */
export interface VitessceCellSets {
  version: '0.1.3';
  tree: { name: string; children: { name: string; color: [number, number, number]; set: [string, number | null][] }[] }[];
}
/** Label columns as a CELLxGENE user-annotations CSV (for `cellxgene launch --annotations-file`); null labels become `unassigned`. */
export function toCellxgeneAnnotations(columns: Record<string, ArrayLike<string | null>>, obsNames: ArrayLike<string>, options?: { source?: string }): string;
/** A prediction as Vitessce cell sets: a child set per label with cells, scored by scNym_confidence. */
export function toVitessceCellSets(p: ScnymPrediction, obsNames: ArrayLike<string>, options?: { name?: string; colors?: Record<string, [number, number, number]> }): VitessceCellSets;
export function loadRegistry(source: string | URL | Registry): Promise<Registry>;
export const version: string;
export const BUNDLE_FORMAT_VERSION: number;
export const ATLAS_FORMAT_VERSION: number;
