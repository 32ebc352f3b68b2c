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
}

export interface HoldoutOptions {
  label_key?: string;
  exclude_labels?: string[];
  use_raw?: boolean;
  normalize?: 'cpm' | 'cp10k';
  test_fraction?: number;
  train?: TrainOptions;
}

export interface NormalizationReport {
  normalization:
    | { kind: 'raw_counts' }
    | { kind: 'linear_normalized' }
    | { kind: 'log_normalized'; scale: number | null }
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

export declare class Dataset {
  readonly nObs: number;
  readonly nVars: number;
  summary(): DatasetSummary;
  varNames(): string[];
  obsNames(): string[];
  free(): void;
}

export interface SclabelSession {
  readonly backend: BackendInfo;
  trainHoldout(dataset: Dataset, options?: HoldoutOptions, controls?: RunControls): Promise<HoldoutReport>;
  dispose(): void;
}

/** Errors thrown by sclabel carry a stable `code`. */
export interface SclabelError extends Error {
  code: 'invalid_file' | 'unsupported_layout' | 'column_not_found' | 'invalid_values' | 'shape_mismatch' | 'genes'
    | 'labels' | 'invalid_option' | 'backend' | 'cancelled';
}

export function initialize(options?: { wasm?: string | URL | Response | BufferSource | WebAssembly.Module }): Promise<void>;
export function startSession(options?: { backend?: BackendRequest }): Promise<SclabelSession>;
export function readH5ad(source: ArrayBuffer | ArrayBufferView | Blob | string | URL, name?: string): Promise<Dataset>;
export function syntheticDataset(options?: { nCells?: number; nGenes?: number; nClasses?: number; seed?: number }): Promise<Dataset>;
export function version(): string;
