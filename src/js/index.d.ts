// Types of sclabel's public JS API. Options and results are the core's serde form (snake_case);
// those in ./generated.d.ts are generated from the Rust types (src/typescript.rs), not written here.

import type * as Core from './generated.js';
import type { BackendRequest, BackendInfo, Executor, Progress, NormalizationReport, EpochStats, HoldoutReport, ScnymConfig, PredictReport, Cutoffs, Category } from './generated.js';

export type {
  BackendRequest, Backend, BackendInfo, Executor, Progress, Phase, NormalizationReport, Normalization, GeneOverlap,
  OptimizerConfig, Sampling, EpochStats, HoldoutReport, ScnymConfig, ScnymPreset, PredictReport, TargetScale,
  HvgFlavor, CutoffRule, Cutoffs, Category, ValueEncoding,
} from './generated.js';

/**
 * Options as callers pass them: every field optional, in nested objects too (the core fills in
 * its defaults, and results echo the resolved options); a tagged union (`kind`) is given whole.
 */
export type Options<T> = { [K in keyof T]?: OptionValue<T[K]> };
type OptionValue<V> = V extends readonly unknown[] ? V : V extends { kind: string } ? V : V extends object ? Options<V> : V;

export type TrainOptions = Options<Core.TrainOptions>;
export type HoldoutOptions = Options<Core.HoldoutOptions>;
/**
 * scNym's config keys as callers pass them (merged into a copy of the preset). `host_network`
 * (CPU backends: the whole training step on the host, default true; `false` keeps burn's autodiff,
 * for comparisons) is a speed switch, not part of the model, so results' configs do not carry it.
 */
export type ScnymConfigOptions = Options<ScnymConfig> & { host_network?: boolean };
type WithConfig<T> = Omit<Options<T>, 'config'> & { config?: ScnymConfigOptions | null };
/** scNym's label transfer (`trainScnym`, `fineTuneScnym`). */
export type TransferOptions = WithConfig<Core.TransferOptions>;
export type ScnymPredictOptions = Options<Core.PredictOptions>;
/** The core's AtlasFineTuneOptions (src/atlas/open.rs): the same defaults as `sclabel train --atlas`. */
export type FineTuneAtlasOptions = WithConfig<Core.AtlasFineTuneOptions>;
export type AtlasBuildOptions = WithConfig<Core.AtlasOptions> & { id: string };
/** Options of `audit` (Annotatability); defaults as the package's. */
export type AuditOptions = Options<Core.AuditOptions>;
/** `target`, the class whose logit is explained, is required. */
export type ExplainOptions = Options<Core.ExplainOptions> & { target: string };

export interface RunControls {
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
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

/** What an atlas is and where its data come from (they travel with it). */
export interface AtlasDescription {
  id: string;
  name?: string | null;
  species?: string | null;
  tissue?: string | null;
  license?: string | null;
  source?: string | null;
}

export interface BuiltAtlas { manifest: AtlasManifest; matrix: Uint8Array; model: Uint8Array; warnings: string[] }

export interface OpenedAtlas { manifest: AtlasManifest; model: ModelHandle; reference: DatasetHandle | null }

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
  report: PredictReport;
  /** The options after defaults were filled in. */
  options: Core.PredictOptions;
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

export type CelltypistOptions = Options<Core.CelltypistOptions>;

/** A CellTypist model held by the engine (from its .pkl or an sclabel CellTypist bundle). */
export interface CelltypistHandle {
  readonly kind: 'celltypist';
  readonly id: number;
  readonly classes: string[];
  /** CellTypist's `features`. */
  readonly genes: string[];
  readonly info: { classifier: 'LogisticRegression' | 'SGDClassifier' | string; with_mean: boolean; description: Record<string, string> };
}

/** An entry of CellTypist's models index (models.json); `url` absolute after loadCelltypistIndex. */
export interface CelltypistIndexEntry {
  filename: string;
  url: string;
  version?: string;
  date?: string;
  details?: string;
  No_celltypes?: number;
  source?: string;
  default?: boolean;
  [key: string]: unknown;
}

export interface CelltypistIndex { description?: string; last_update?: string; models: CelltypistIndexEntry[] }

/** CellTypist's annotation under its own names, and under sclabel's. */
export interface CelltypistPrediction {
  classes: string[];
  /** Best match per cell. */
  predicted_labels: string[];
  /** Every type with probability above `p_thres`, joined with '|', or 'Unassigned'. */
  prob_match: string[];
  /** The best match's probability. */
  conf_score: Float32Array;
  /** Cells × classes, row-major: sigmoid of the decision scores. */
  probability_matrix: Float32Array;
  decision_matrix: Float32Array;
  /** With majority_voting: each cell's cluster's label ('Heterogeneous' below min_prop), its cluster, and how the clusters were made. */
  majority_voting: string[] | null;
  over_clustering: Uint32Array | null;
  clustering: string | null;
  /** sclabel's names: the final label (the vote, else the best match), the best match's class index, conf_score, probability_matrix. */
  labels: string[];
  predicted: Uint32Array;
  confidence: Float32Array;
  probabilities: Float32Array;
  /** The model's genes the data have (the others are left out of the scores, as CellTypist does). */
  genesUsed: number;
  report: Core.PredictReport;
  options: Core.CelltypistOptions;
  backend: string;
  /** The cells' names, when an `.h5ad` source was predicted directly (not a loaded data set). */
  obsNames?: string[];
}

export interface AuditResult {
  /** Cells of the audited data set (what `cells` index into). */
  n_obs: number;
  /** Rows of the dataset that were audited; every per-cell array is aligned with it. */
  cells: Uint32Array;
  labels: string[];
  /** Mean probability of the annotated label over the epochs. */
  conf: Float32Array;
  /** Population standard deviation of it. */
  var: Float32Array;
  /** 1 = trusted (conf or var above its cutoff). */
  trusted: Uint8Array;
  category: Category[];
  /** Given label for trusted cells, a re-annotation network's label for untrusted ones; null when off. */
  corrected_label: string[] | null;
  conf_second?: Float32Array;
  var_second?: Float32Array;
  cutoffs: Cutoffs;
  /** The simulated-noise run: positions (into `cells`) of flipped cells, AUROC of 1 − conf for them. */
  noise_run: { flipped: number[]; auroc: number | null } | null;
  gene_scores: { genes: string[]; conf_score_high: Float32Array; conf_score_low: Float32Array; conf_score_mid: Float32Array } | null;
  class_names: string[];
  history: EpochStats[];
  backend: BackendInfo;
  /** Which executor trained the networks. */
  executor: Executor;
  normalization: NormalizationReport;
  /** The genes the networks trained on (after highly-variable-gene selection). */
  genes: string[];
  /** How they were chosen, e.g. "2000 highly variable genes of 32738 (seurat on ln(CP10k+1), 2638 cells)". */
  gene_selection: string;
  /** The options after defaults were filled in. */
  options: Core.AuditOptions;
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

/** `fromMatrix`'s values: dense (row-major, `nObs × nVars`) or CSR. */
export type MatrixInput =
  | { nObs: number; nVars: number; dense: ArrayLike<number> }
  | { nObs: number; nVars: number; indptr: ArrayLike<number>; indices: ArrayLike<number>; data: ArrayLike<number> };

export type BundleSource = ArrayBuffer | ArrayBufferView | Blob | string | URL;

export interface LoadProgress { phase: 'loading'; done: number; total: number }

/** obs columns and obsm matrices to write into a user's .h5ad (`exportH5ad`). */
export interface H5adAdditions {
  obs?: Record<string,
    | { categorical: (string | null)[] }
    | { categorical_codes: { categories: string[]; codes: Int32Array | number[] } }
    | { f32: Float32Array | number[] } | { i32: Int32Array | number[] } | { bool: boolean[] | Uint8Array }>;
  obsm?: Record<string, { n_cols: number; values: Float32Array | number[] }>;
  /** A prediction's obs scNym, scNym_confidence and obsm X_scnym (what `predictionAdditions` gives). */
  prediction?: ScnymPrediction;
  /** An audit's obs conf, var, Annotation and corrected_label (what `auditAdditions` gives). */
  audit?: AuditResult;
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
  /** Where the full .wasm (CPU + WebGPU) is, when a bundler moved it; given alone, the full module runs whatever the backend. */
  wasm?: string | URL | Response | BufferSource | WebAssembly.Module;
  /** Where the CPU-only .wasm is (about half the full one; loaded for 'cpu', or 'auto' without WebGPU, and in Node), when a bundler moved it. */
  wasmCpu?: string | URL | Response | BufferSource | WebAssembly.Module;
  /**
   * Bytes the module's memory may reach before work whose data would pass it is refused with
   * `too_large` (a message saying what is too big and what to do) instead of crashing the page.
   * Default and most: 4 GiB minus 512 MiB of headroom.
   */
  memoryLimit?: number;
  /**
   * On the CPU, the most workers (each its own wasm instance, this client's included) one scNym
   * prediction of a loaded data set is split across by rows, at 2,000 cells or more per worker.
   * Default `navigator.hardwareConcurrency`, at most 4; 1 never splits. The result equals one
   * worker's; a helper worker that fails is dropped and the prediction runs in one worker.
   */
  predictWorkers?: number;
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
  /**
   * A data set from arrays the host already holds (e.g. a viewer's loaded matrix): dense row-major
   * values or CSR; values are read as a file's X would be (counts, ln or log2 detected).
   */
  fromMatrix(matrix: MatrixInput, options: { obsNames: ArrayLike<string>; varNames: ArrayLike<string>; obs?: Record<string, ArrayLike<string | null>>; name?: string }): Promise<DatasetHandle>;
  /** X as held, CSR (only the kept genes of a data set loaded with `genes`). */
  matrix(dataset: DatasetHandle): Promise<{ nObs: number; nVars: number; indptr: Float64Array; indices: Uint32Array; data: Float32Array }>;
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
  /** A CellTypist model: its .pkl (nothing in it runs) or sclabel bundle, or an entry of loadCelltypistIndex (cached per version). */
  loadCelltypist(source: BundleSource | CelltypistIndexEntry, options?: { cache?: string }): Promise<CelltypistHandle>;
  /** CellTypist's annotation of a loaded data set or of an `.h5ad` read by blocks, with optional majority voting. */
  predictCelltypist(model: CelltypistHandle, dataset: DatasetHandle | Blob | ArrayBuffer | ArrayBufferView | string, options?: CelltypistOptions, controls?: RunControls): Promise<CelltypistPrediction>;
  /** The CellTypist model as an sclabel bundle (safetensors, no pickle). */
  saveCelltypist(model: CelltypistHandle): Promise<Uint8Array>;
  /** The user's .h5ad with the additions written in (a Blob that refers to their file where it can; see docs/big-files.md). */
  exportH5ad(dataset: DatasetHandle, additions: H5adAdditions): Promise<Blob>;
  memoryUsage(): Promise<{ wasmBytes: number }>;
  free(handle: DatasetHandle | ModelHandle | CelltypistHandle): Promise<void>;
  close(): void;
}

/** Errors thrown by sclabel carry a stable `code`. */
export interface SclabelError extends Error {
  code: 'invalid_file' | 'unsupported_layout' | 'column_not_found' | 'invalid_values' | 'shape_mismatch' | 'genes'
    | 'labels' | 'invalid_option' | 'backend' | 'cancelled' | 'too_large' | 'crashed' | 'device_lost' | 'worker_failed' | 'closed' | 'unsupported_version' | 'internal';
  /**
   * The core's fields of the error, as data: where in the user's data it is (`file`, `column`,
   * `gene`, `cell`, `row`), or the `option`, the format `found` / `supported`, the bytes `need` /
   * `available` … (absent for the JS layer's own codes).
   */
  details?: { file?: string; column?: string; gene?: string; cell?: string; row?: number; option?: string; element?: string; what?: string; found?: string; supported?: string; need?: number; available?: number; backend?: string };
}

export function open(options?: OpenOptions): Promise<Sclabel>;
export function predictionAdditions(prediction: ScnymPrediction): H5adAdditions;
/** `nObs` is not needed (exportH5ad knows the data set's cells, and refuses an audit of another size); accepted for callers that pass it. */
export function auditAdditions(audit: AuditResult, nObs?: number): H5adAdditions;
export function toCsv(columns: Record<string, ArrayLike<unknown>>, index?: ArrayLike<string>): string;
/** Vitessce's cell-sets JSON (obsSets 0.1.3). */
export interface VitessceCellSets {
  version: '0.1.3';
  tree: { name: string; children: { name: string; color: [number, number, number]; set: [string, number | null][] }[] }[];
}
/** Label columns as a CELLxGENE user-annotations CSV (for `cellxgene launch --annotations-file`); null labels become `unassigned`. */
export function toCellxgeneAnnotations(columns: Record<string, ArrayLike<string | null>>, obsNames: ArrayLike<string>, options?: { source?: string }): string;
/** Labels as the CELLxGENE schema's `cell_type_ontology_term_id` (an atlas's Cell Ontology IDs; 'unknown' for labels without one). */
export function toCellxgeneSchemaColumns(labels: ArrayLike<string | null>, manifest: { classes: { label: string; ontology_id?: string | null }[] }): { cell_type_ontology_term_id: string[] };
/** Result columns as a UCSC Cell Browser meta table (meta.tsv as cbBuild reads it: the cell id first, tab-separated); missing values empty. */
export function toCellBrowserMeta(columns: Record<string, ArrayLike<string | number | null>>, obsNames: ArrayLike<string>, options?: { idColumn?: string }): string;
/** A prediction as Vitessce cell sets: a child set per label with cells, scored by scNym_confidence. */
export function toVitessceCellSets(p: ScnymPrediction, obsNames: ArrayLike<string>, options?: { name?: string; colors?: Record<string, [number, number, number]> }): VitessceCellSets;
/** A prediction's confidence as Vitessce cell sets: a child set per band between `edges` (default 0.5, 0.7, 0.9), low to high. */
export function toVitessceConfidenceSets(p: ScnymPrediction, obsNames: ArrayLike<string>, options?: { name?: string; edges?: number[] }): VitessceCellSets;
export function loadRegistry(source: string | URL | Registry): Promise<Registry>;
/** CellTypist's models index (models.json) from a URL the host gives, or an object; fetches nothing else. */
export function loadCelltypistIndex(source: string | URL | CelltypistIndex): Promise<CelltypistIndex>;
export const version: string;
export const BUNDLE_FORMAT_VERSION: number;
export const ATLAS_FORMAT_VERSION: number;
