// sclabel's public JS API. `open()` starts an engine (engine.js) that owns the wasm module, the
// compute device and every data set and model: in a Web Worker in browsers, so the page never
// blocks; in the caller's thread in Node (CPU backend). Everything else here is plain JS.
import { fail } from './errors.js';
import { PredictionPool } from './parallel.js';

export const version = '__SCLABEL_VERSION__';
/** Newest model-bundle format this package reads (the core refuses newer ones too). */
export const BUNDLE_FORMAT_VERSION = 1;
/** Newest atlas manifest format this package reads (`sclabel atlas build`'s atlas.json). */
export const ATLAS_FORMAT_VERSION = 1;

const isNode = typeof process !== 'undefined' && process.versions?.node != null;

/** Relative URLs mean the page's location, not the worker's: resolve them before they cross (as strings: URL objects don't clone). */
const resolved = (source) => {
  if (source instanceof URL) return source.href;
  return !isNode && typeof source === 'string' && globalThis.location ? new URL(source, location.href).href : source;
};
const BACKENDS = Object.freeze(['auto', 'webgpu', 'cpu']);

/** An atlas.json's text (a URL, or a path in Node) and how its files' paths resolve. */
async function readManifest(location) {
  if (isNode && typeof location === 'string' && !/^[a-z][a-z0-9+.-]*:/i.test(location)) {
    const { readFile } = await import('node:fs/promises');
    const { resolve, dirname, join } = await import('node:path');
    const text = await readFile(location, 'utf8').catch((e) => { throw fail('invalid_file', `${location}: ${e.message}`); });
    return { text, file: (p) => join(dirname(resolve(location)), p) };
  }
  const response = await fetch(location).catch((e) => { throw fail('invalid_file', `${location}: ${e.message}`); });
  if (!response.ok) throw fail('invalid_file', `${location}: HTTP ${response.status}`);
  return { text: await response.text(), file: (p) => new URL(p, location).href };
}

/**
 * Starts sclabel. `backend`: 'auto' (WebGPU, else CPU — the result says why), 'webgpu' or 'cpu'.
 * `worker`: run in a Web Worker (default in browsers; Node always runs in-process).
 * The CPU-only wasm module (about half the full one) is what a page without WebGPU, asking for
 * the CPU, or Node downloads; the full module (CPU + WebGPU) otherwise.
 * `wasm` / `wasmCpu`: where the full / CPU-only .wasm is, when a bundler moved them (a URL,
 * Response, bytes or Module); given `wasm` alone, the full module runs whatever the backend.
 * `memoryLimit`: bytes the module's memory may reach before work is refused with `too_large`
 * (default and most: 4 GiB minus 512 MiB of headroom).
 * `predictWorkers`: on the CPU, the most workers (each its own wasm instance, the client's own
 * included) one scNym prediction of a loaded data set is split across, by rows, at 2,000 cells or
 * more per worker (default `navigator.hardwareConcurrency`, at most 4; 1 = never split). The
 * result is the one-worker result; a helper that fails is dropped and the prediction runs in one
 * worker.
 */
export async function open({ backend = 'auto', worker = !isNode && typeof Worker !== 'undefined', wasm, wasmCpu, memoryLimit, predictWorkers } = {}) {
  if (!BACKENDS.includes(backend)) throw fail('invalid_option', `unknown backend '${backend}'; use one of ${BACKENDS.join(', ')}`);
  if (predictWorkers !== undefined && !(Number.isInteger(predictWorkers) && predictWorkers >= 1)) {
    throw fail('invalid_option', `predictWorkers must be a whole number ≥ 1, got ${predictWorkers}`);
  }
  const transport = worker ? new WorkerTransport() : await InProcess.create();
  const modules = { wasm: resolved(wasm), wasmCpu: resolved(wasmCpu), memoryLimit };
  const info = await start(transport, { backend, ...modules });
  // Helper workers run the CPU module; on WebGPU the device does the work, in one worker.
  // By default at most 4: each worker holds its own model, and rows are handed out one worker
  // at a time (measured with 2 and tested with 3).
  const size = predictWorkers ?? Math.min(4, globalThis.navigator?.hardwareConcurrency || 1);
  const pool = worker && info.backend !== 'webgpu' && size > 1 ? new PredictionPool(async () => {
    const helper = new WorkerTransport();
    await start(helper, { backend: 'cpu', ...modules });
    return helper;
  }, size) : null;
  return new Client(transport, info, pool);
}

/** Starts `transport`'s engine with `options` (its backend info); one that cannot start is closed. */
async function start(transport, options) {
  try {
    return await transport.call('open', [options]);
  } catch (e) {
    transport.close();
    throw e;
  }
}

/** Runs the engine in a dedicated module worker; calls are messages, progress comes back as messages. */
class WorkerTransport {
  constructor() {
    // This exact `new Worker(new URL(..., import.meta.url))` form is what Vite and webpack 5
    // recognise to bundle the worker with its imports.
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'sclabel' });
    this.pending = new Map();
    this.nextId = 1;
    this.worker.onmessage = ({ data }) => {
      const call = this.pending.get(data.id);
      if (!call) return;
      if (data.type === 'progress') {
        try { call.onProgress?.(data.progress); } catch (e) { console.error('sclabel: onProgress threw', e); }
        return;
      }
      this.pending.delete(data.id);
      call.cleanup();
      if (data.type === 'result') call.resolve(data.result);
      else call.reject(fail(data.error.code, data.error.message, data.error.details));
    };
    // The worker script failed to load or threw outside a call: nothing pending can finish.
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      this.failAll(fail('worker_failed', `the sclabel worker failed: ${event.message ?? 'could not start (is worker.js served next to index.js?)'}`));
    };
  }

  /** `transfer`: buffers of `args` to move to the worker rather than copy (the caller gives them up). */
  call(op, args, { onProgress, signal, transfer = [] } = {}) {
    if (signal?.aborted) return Promise.reject(fail('cancelled', 'cancelled before it started'));
    if (!this.worker) return Promise.reject(fail('closed', 'this sclabel client was closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const abort = () => this.worker?.postMessage({ id, type: 'abort' });
      signal?.addEventListener('abort', abort, { once: true });
      const cleanup = () => signal?.removeEventListener('abort', abort);
      this.pending.set(id, { resolve, reject, onProgress, cleanup });
      this.worker.postMessage({ id, type: 'call', op, args }, transfer);
    });
  }

  failAll(error) {
    for (const call of this.pending.values()) { call.cleanup(); call.reject(error); }
    this.pending.clear();
  }

  close() {
    this.worker?.terminate();
    this.worker = null;
    this.failAll(fail('closed', 'this sclabel client was closed'));
  }
}

/** The engine in this thread (Node, or a page that asked for `worker: false`). */
class InProcess {
  static async create() {
    const { Engine } = await import('./engine.js');
    return new InProcess(Engine);
  }

  constructor(Engine) {
    this.Engine = Engine;
    this.engine = null;
  }

  async call(op, args, controls = {}) {
    if (controls.signal?.aborted) throw fail('cancelled', 'cancelled before it started');
    if (op === 'open') {
      this.engine = await this.Engine.create(args[0]);
      return this.engine.backend;
    }
    if (!this.engine) throw fail('closed', 'this sclabel client was closed');
    return (await this.engine.call(op, args, controls)).result;
  }

  close() {
    this.engine?.call('dispose', []);
    this.engine = null;
  }
}

/** What `open()` resolves to. Data sets and models are handles; results are plain objects of typed arrays. */
class Client {
  constructor(transport, backend, pool = null) {
    this.transport = transport;
    /** Helper workers for predictions split by rows (`predictWorkers`), or null. */
    this.pool = pool;
    /** Which backend runs and why: { requested, backend, adapter, reason }. */
    this.backend = backend;
  }

  /** One call to the engine; after a lost GPU device the engine runs on the CPU, and `backend` says so. */
  async #call(op, args, controls) {
    try {
      return await this.transport.call(op, args, controls);
    } catch (e) {
      if (e?.code === 'device_lost') this.backend = await this.transport.call('backend', []).catch(() => this.backend);
      throw e;
    }
  }

  /** Reads an .h5ad or AnnData-Zarr (File/Blob, ArrayBuffer, typed array, URL, directory handle, file list, zarr store; a path in Node). */
  load(source, { name, format, varNames, genes, onProgress, signal } = {}) {
    return this.#call('load', [resolved(source), { name, format, varNames, genes: genes && Array.from(genes) }], { onProgress, signal });
  }

  /**
   * A data set from arrays the host already holds (a viewer's loaded matrix): `matrix` is
   * `{ nObs, nVars, dense }` (row-major, any numeric typed array) or `{ nObs, nVars, indptr,
   * indices, data }` (CSR); `obsNames` / `varNames` name its cells and genes; `obs`: string columns
   * (e.g. labels). Values are read as a file's X would be (counts, ln or log2 detected).
   */
  fromMatrix(matrix, { obsNames, varNames, obs, name } = {}) {
    return this.#call('fromMatrix', [matrix, { obsNames: obsNames && Array.from(obsNames), varNames: varNames && Array.from(varNames), obs, name }]);
  }

  /** Seeded synthetic raw counts with `cell_type` and `batch` obs columns. */
  synthetic(spec = {}) { return this.#call('synthetic', [spec]); }
  /** A new data set with only the cells at `rows`. */
  subset(dataset, rows) { return this.#call('subset', [dataset, Array.from(rows)]); }
  /** A new data set with obs column `column` set to `values` (e.g. 'Unlabeled' for cells to annotate). */
  withObs(dataset, column, values) { return this.#call('withObs', [dataset, column, values]); }
  /** An obs column as strings (missing values are null). */
  obs(dataset, column) { return this.#call('obs', [dataset, column]); }
  obsNames(dataset) { return this.#call('obsNames', [dataset]); }
  varNames(dataset) { return this.#call('varNames', [dataset]); }
  /** X as held (CSR: indptr, indices, data; only the kept genes of a data set loaded with `genes`). */
  matrix(dataset) { return this.#call('matrix', [dataset]); }

  /**
   * scNym: trains on `reference` (cells labelled 'Unlabeled' are unlabelled) and an optional
   * unlabelled `query`: loaded data sets, or `.h5ad` files read a block of cells at a time.
   */
  trainScnym(reference, query, options = {}, controls = {}) {
    return this.#call('trainScnym', [reference, query ?? null, options], controls);
  }

  /**
   * scNym fine-tuning: as trainScnym, starting from `pretrained`'s weights (genes and classes
   * matched by name; what could not be carried over is in the model's warnings).
   */
  fineTuneScnym(pretrained, reference, query, options = {}, controls = {}) {
    return this.#call('fineTuneScnym', [pretrained, reference, query ?? null, options], controls);
  }

  /**
   * Fine-tunes an opened atlas (see openAtlas) on the user's `query` as the unlabelled target —
   * scNym's atlas → target path. The atlas's label and domain columns are used and its stored
   * ln(CPM+1) values are taken as they are; `normalize` / `use_raw` apply to the query.
   */
  async fineTuneAtlas(atlas, query, options = {}, controls = {}) {
    if (!atlas?.model || !atlas?.reference) {
      throw fail('invalid_option', 'fineTuneAtlas needs an atlas opened with its reference (openAtlas(source) without { reference: false })');
    }
    const { label_key, domain_key } = atlas.manifest;
    return this.#call('fineTuneAtlas', [atlas.model, atlas.reference, query ?? null, { label_key, domain_key: domain_key ?? null }, options], controls);
  }

  /**
   * scNym labels (`scNym`), `scNym_confidence`, `scNym_probabilities` (cells × classes) and the
   * embedding `X_scnym`, of a loaded data set or of an `.h5ad` read a block of cells at a time.
   */
  predictScnym(model, dataset, options = {}, controls = {}) {
    const workers = this.pool?.workersFor(dataset) ?? 1;
    if (workers > 1) return this.pool.predict(this.transport, model, dataset, options, controls, workers);
    return this.#call('predictScnym', [model, dataset, options], controls);
  }

  /**
   * Annotatability: conf, var, categories, corrected labels and gene scores from training dynamics,
   * of a loaded data set or of an `.h5ad` read a block of cells at a time (only the audited genes,
   * e.g. the 2,000 highly variable ones, are kept; the same report as loading it whole).
   */
  audit(dataset, options = {}, controls = {}) {
    return this.#call('audit', [dataset, options], controls);
  }

  /**
   * Expected-gradient gene attributions of `model`'s logit for `options.target` on the cells
   * labelled so in `labelKey` (an obs column's name, or one label per cell such as a prediction's
   * `scNym`), of a loaded data set or of an `.h5ad` read a block of cells at a time (then at most
   * 10,000 reference cells are kept, a seeded sample; the result's warnings say so).
   */
  explainScnym(model, dataset, labelKey, options = {}, controls = {}) {
    return this.#call('explainScnym', [model, dataset, labelKey, options], controls);
  }

  /** A plain MLP on part of the labelled cells, tested on the rest (a quick check of a data set). */
  trainHoldout(dataset, options = {}, controls = {}) {
    return this.#call('trainHoldout', [dataset, options], controls);
  }

  /** The model bundle's bytes (safetensors), to download and load again later. */
  saveModel(model) { return this.#call('saveModel', [model]); }

  /** A model bundle from bytes, a Blob or a URL; with `cache` (a version key) a URL is kept in the Cache API. */
  loadModel(source, { cache } = {}) { return this.#call('loadModel', [resolved(source), { cache }]); }

  /** A registry entry's bundle (see loadRegistry), cached per atlas version and checked against its sha256. */
  async loadAtlas(entry) {
    if (typeof entry?.url !== 'string') {
      throw fail('invalid_option', `registry entry '${entry?.id}' names an atlas package (manifest), not a bundle: open it with openAtlas(entry)`);
    }
    if (entry.bundle_format_version > BUNDLE_FORMAT_VERSION) {
      throw fail('unsupported_version', `atlas '${entry.id}' ${entry.version} needs bundle format ${entry.bundle_format_version}; this sclabel (${version}) reads up to ${BUNDLE_FORMAT_VERSION} — update sclabel`);
    }
    return this.#call('loadModel', [entry.url, { cache: `${entry.id}@${entry.version}`, sha256: entry.sha256 }]);
  }

  /**
   * An atlas package built by `sclabel atlas build` (its atlas.json URL, or a registry entry with
   * `manifest`): the model for instant annotation and, unless `reference: false`, the preconverted
   * reference as a data set for fine-tuning (`trainScnym(reference, query)`). Both are cached per
   * atlas version and checked against the manifest's SHA-256; the manifest's format version is
   * checked before anything else is fetched. `genes` keeps only those of the reference's genes
   * (e.g. the ones a query has).
   */
  async openAtlas(source, { reference = true, genes } = {}) {
    const location = resolved(typeof source === 'object' && !(source instanceof URL) ? source.manifest : source);
    const { text, file } = await readManifest(location);
    // Checked by the core, as natively (atlas::open::check_manifest), before any file is fetched.
    const manifest = await this.#call('checkAtlasManifest', [text, String(location)]);
    const { model: m, matrix } = manifest.files;
    // Cached per file content: a rebuilt atlas (new SHA-256) is fetched once, the old copy dropped.
    const model = await this.#call('loadModel', [file(m.path), { cache: m.sha256, sha256: m.sha256 }]);
    const data = reference
      ? await this.#call('loadAtlasMatrix', [file(matrix.path), { cache: matrix.sha256, sha256: matrix.sha256, name: `${manifest.id} reference`, genes }])
      : null;
    return { manifest, model, reference: data };
  }

  /**
   * `sclabel atlas build` on a loaded data set: { manifest, matrix, model, warnings } — store
   * `manifest` as atlas.json and the two byte arrays under `manifest.files.{matrix,model}.path`.
   */
  buildAtlas(dataset, options = {}, controls = {}) {
    return this.#call('buildAtlas', [dataset, options], controls);
  }

  /**
   * A CellTypist model: its `.pkl` (read by a restricted pickle reader — only numpy's and
   * scikit-learn's names those files use are interpreted, nothing in the file runs) or the bundle
   * `sclabel celltypist convert` / `saveCelltypist` writes; bytes, a Blob, a URL, or an entry of
   * `loadCelltypistIndex` (fetched once per version, then from the Cache API). `cache` (a version
   * key) caches a URL too.
   */
  loadCelltypist(source, { cache } = {}) {
    if (source && typeof source === 'object' && typeof source.filename === 'string' && typeof source.url === 'string') {
      return this.#call('loadCelltypist', [source.url, { cache: `${source.filename}@${source.version ?? ''}`, name: source.filename }]);
    }
    return this.#call('loadCelltypist', [resolved(source), { cache }]);
  }

  /**
   * CellTypist's annotation of a loaded data set, or of an `.h5ad` read a block of cells at a time
   * (ln(CP10k+1) of X or `.raw`, whatever scale it is on): best match (`predicted_labels`), prob
   * match, `conf_score`, the probability and decision matrices, and with `majority_voting` the
   * vote within an over-clustering (Leiden on a kNN graph; a loaded data set only) or within
   * `over_clustering` (an obs column). `report` gives the gene overlap and warns when the data
   * share few of the model's genes.
   */
  predictCelltypist(model, dataset, options = {}, controls = {}) {
    return this.#call('predictCelltypist', [model, dataset, options], controls);
  }

  /** A CellTypist model as an sclabel bundle (safetensors: no pickle), to serve instead of its .pkl. */
  saveCelltypist(model) { return this.#call('saveCelltypist', [model]); }

  /** Imports scNym 0.4 weights (its torch.save'd state dict) with its gene and class lists. */
  importScnym(weights, genes, classes) { return this.#call('importScnym', [resolved(weights), genes, classes]); }

  /**
   * The .h5ad `dataset` was loaded from, with obs columns and obsm matrices added (see
   * `predictionAdditions` / `auditAdditions`), as a Blob; every other object in the file is kept as
   * it was. A file h5py wrote (anndata, scanpy) keeps its bytes and takes the additions after them:
   * the Blob refers to the user's file rather than copying it, so files of any size export.
   */
  exportH5ad(dataset, additions) { return this.#call('exportH5ad', [dataset, additions]); }

  /** Bytes of wasm memory in use (its high-water mark: wasm memory never shrinks). */
  memoryUsage() { return this.#call('memoryUsage', []); }

  /** Frees a data set or model in the engine. */
  free(handle) { return this.#call('free', [handle]); }

  /** Stops the worker (or frees everything in-process); pending calls reject with code 'closed'. */
  close() {
    this.pool?.close();
    this.transport.close();
  }
}

// ------------------------------------------------------------------------------- results

/**
 * exportH5ad's additions for a predictScnym result: obs scNym, scNym_confidence and obsm X_scnym,
 * mapped by the core (as the CLI's --annotate-h5ad writes them).
 */
export function predictionAdditions(prediction) {
  // The probabilities (cells × classes, the largest array) are not written: not copied to the worker.
  const { scNym_probabilities: _, ...written } = prediction;
  return { prediction: written };
}

/**
 * exportH5ad's additions for an audit result: obs conf, var, Annotation and corrected_label, as
 * Annotatability writes them, mapped by the core; cells the audit left out (excluded labels) get
 * NaN / missing values. (`nObs` is no longer needed: exportH5ad knows the data set's cells, and
 * refuses an audit of a data set of another size.)
 */
export function auditAdditions(audit) {
  return { audit };
}

/** Distinct colours (Tableau 20 order) for cell sets; more classes cycle through them. */
const SET_COLORS = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
  [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148], [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229],
];

/**
 * A predictScnym result as Vitessce cell sets (its obsSets JSON, version 0.1.3): one parent set
 * `name` with a child per label that has cells — the model's classes in order, then any other
 * label (e.g. 'Unassigned') — each listing its cells as [obs name, scNym_confidence]. What
 * Vitessce's obsSets files and its `additionalObsSets` coordination value take. `obsNames`: one per
 * cell (a streamed prediction's `p.obsNames`, or `sl.obsNames(dataset)`); `colors`: label → [r, g, b].
 */
export function toVitessceCellSets(p, obsNames, { name = 'sclabel scNym', colors = {} } = {}) {
  const n = p.scNym.length;
  if (obsNames?.length !== n) throw fail('invalid_option', `toVitessceCellSets: ${obsNames?.length ?? 'no'} obs names for ${n} predicted cells`);
  const labels = [...p.classes, ...new Set(p.scNym.filter((l) => !p.classes.includes(l)))];
  const sets = new Map(labels.map((l) => [l, []]));
  for (let i = 0; i < n; i++) {
    const score = p.scNym_confidence[i];
    sets.get(p.scNym[i]).push([String(obsNames[i]), Number.isFinite(score) ? score : null]);
  }
  const children = labels.map((l, k) => ({ name: l, color: colors[l] ?? SET_COLORS[k % SET_COLORS.length], set: sets.get(l) })).filter((c) => c.set.length > 0);
  return { version: '0.1.3', tree: [{ name, children }] };
}

/** Sequential colours (viridis at 0.2, 0.45, 0.7, 0.95) for confidence bands, low to high. */
const CONFIDENCE_COLORS = [[65, 68, 135], [42, 120, 142], [34, 168, 132], [187, 223, 39]];

/**
 * A prediction's confidence as Vitessce cell sets, so a viewer that colours by set selection can
 * colour cells by it: one parent set `name` with a child per band of scNym_confidence (edges
 * ascending, each band [lower, upper)), low to high on a sequential scale, each cell with its score.
 */
export function toVitessceConfidenceSets(p, obsNames, { name = 'sclabel confidence', edges = [0.5, 0.7, 0.9] } = {}) {
  const n = p.scNym_confidence.length;
  if (obsNames?.length !== n) throw fail('invalid_option', `toVitessceConfidenceSets: ${obsNames?.length ?? 'no'} obs names for ${n} predicted cells`);
  if (!edges.every((e, i) => Number.isFinite(e) && (i === 0 || e > edges[i - 1]))) throw fail('invalid_option', `toVitessceConfidenceSets: edges [${edges.join(', ')}] are not finite and ascending`);
  const labels = [`confidence < ${edges[0]}`, ...edges.slice(1).map((e, i) => `${edges[i]} ≤ confidence < ${e}`), `confidence ≥ ${edges[edges.length - 1]}`];
  const sets = labels.map(() => []);
  for (let i = 0; i < n; i++) {
    const c = p.scNym_confidence[i];
    if (!Number.isFinite(c)) continue; // a cell left out of the prediction has no confidence
    let band = 0;
    while (band < edges.length && c >= edges[band]) band++;
    sets[band].push([String(obsNames[i]), c]);
  }
  const color = (k) => CONFIDENCE_COLORS[Math.round((k / Math.max(labels.length - 1, 1)) * (CONFIDENCE_COLORS.length - 1))];
  const children = labels.map((l, k) => ({ name: l, color: color(k), set: sets[k] })).filter((c) => c.set.length > 0);
  return { version: '0.1.3', tree: [{ name, children }] };
}

/**
 * Label columns (name → one label per cell; null for none) as a CELLxGENE user-annotations CSV:
 * `#` comment lines, a header (`index`, then the columns), a row per cell — the file CELLxGENE
 * (desktop) reads from `--annotations-file` with pandas `read_csv(dtype='category', index_col=0,
 * header=0, comment='#', keep_default_na=False)` (chanzuckerberg/cellxgene,
 * server/common/annotations/local_file_csv.py). A cell without a label is `unassigned`. Names and
 * labels may not hold '#' (that reader cuts a line there): refused, naming the value.
 */
export function toCellxgeneAnnotations(columns, obsNames, { source = 'sclabel' } = {}) {
  const names = Object.keys(columns);
  const n = obsNames?.length ?? 0;
  const check = (v, what) => {
    if (String(v).includes('#')) throw fail('invalid_values', `toCellxgeneAnnotations: ${what} '${v}' holds '#', which CELLxGENE reads as the start of a comment`);
  };
  for (const k of names) {
    if (columns[k].length !== n) throw fail('invalid_option', `toCellxgeneAnnotations: column '${k}' has ${columns[k].length} values for ${n} cells`);
    check(k, 'column name');
  }
  const label = (v) => (v === null || v === undefined ? 'unassigned' : v);
  const body = Array.from({ length: n }, (_, i) => {
    check(obsNames[i], 'cell name');
    return [obsNames[i], ...names.map((k) => { check(label(columns[k][i]), `label of cell ${i}`); return label(columns[k][i]); })];
  });
  const header = [`# Annotations generated on ${new Date().toISOString().slice(0, 19)} using ${source}`, '# Input data: one row per cell, in the data set\'s obs order'];
  const quote = (v) => (/[",\n\r]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  return `${[...header, ['index', ...names].map(quote).join(','), ...body.map((r) => r.map(quote).join(','))].join('\n')}\n`;
}

/** Cell Ontology terms the CELLxGENE schema forbids for cell_type_ontology_term_id (too general). */
const FORBIDDEN_CELL_TYPES = new Set(['CL:0000255', 'CL:0000257', 'CL:0000548']);

/**
 * Labels as the CELLxGENE schema's obs column `cell_type_ontology_term_id`: each label's Cell
 * Ontology ID from an atlas manifest's classes, 'unknown' for a label without one (e.g.
 * 'Unassigned'). IDs that are not CL terms, or that the schema forbids, are refused, naming the
 * class. (`cell_type` itself is added by CELLxGENE's curation from the ID.)
 */
export function toCellxgeneSchemaColumns(labels, manifest) {
  const ids = new Map();
  for (const c of manifest?.classes ?? []) {
    const id = c.ontology_id;
    if (id == null) continue;
    if (!/^CL:\d{7}$/.test(id)) throw fail('invalid_file', `toCellxgeneSchemaColumns: class '${c.label}' has ontology_id '${id}', not a Cell Ontology term (CL:nnnnnnn)`);
    if (FORBIDDEN_CELL_TYPES.has(id)) throw fail('invalid_file', `toCellxgeneSchemaColumns: class '${c.label}' has ontology_id '${id}', which the CELLxGENE schema forbids as too general`);
    ids.set(c.label, id);
  }
  return { cell_type_ontology_term_id: Array.from(labels, (l) => ids.get(l) ?? 'unknown') };
}

/**
 * Result columns as a UCSC Cell Browser meta table (meta.tsv, as `cbBuild` reads it: tab-separated,
 * a header row, the cell identifier first, one row per cell). Missing values are empty. Values
 * holding a tab or a line break are refused, as are cell names that start with '#' (a comment
 * line there) or '"' (the reader then strips quotes from every field).
 */
export function toCellBrowserMeta(columns, obsNames, { idColumn = 'cellId' } = {}) {
  const names = Object.keys(columns);
  const n = obsNames?.length ?? 0;
  const field = (v, what) => {
    const text = v === null || v === undefined || (typeof v === 'number' && Number.isNaN(v)) ? '' : String(v);
    if (/[\t\r\n]/.test(text)) throw fail('invalid_values', `toCellBrowserMeta: ${what} '${text}' holds a tab or a line break, which a .tsv field cannot`);
    return text;
  };
  for (const k of [idColumn, ...names]) {
    if (field(k, 'column name') === '') throw fail('invalid_option', 'toCellBrowserMeta: a column name is empty');
  }
  for (const k of names) {
    if (columns[k].length !== n) throw fail('invalid_option', `toCellBrowserMeta: column '${k}' has ${columns[k].length} values for ${n} cells`);
  }
  const rows = Array.from({ length: n }, (_, i) => {
    const cell = field(obsNames[i], 'cell name');
    if (/^[#"]/.test(cell)) throw fail('invalid_values', `toCellBrowserMeta: cell name '${cell}' starts with '${cell[0]}', which the Cell Browser reads as ${cell[0] === '#' ? 'a comment line' : 'a quoted file'}`);
    return [cell, ...names.map((k) => field(columns[k][i], `value of '${k}' for cell ${i}`))].join('\t');
  });
  return `${[[idColumn, ...names].join('\t'), ...rows].join('\n')}\n`;
}

/** CSV text: one row per cell, `index` first (cell names), then each column (arrays / typed arrays). */
export function toCsv(columns, index) {
  const names = Object.keys(columns);
  const n = index?.length ?? columns[names[0]]?.length ?? 0;
  for (const k of names) {
    if (columns[k].length !== n) throw fail('invalid_option', `toCsv: column '${k}' has ${columns[k].length} values, expected ${n}`);
  }
  const quote = (v) => {
    if (v === null || v === undefined || (typeof v === 'number' && Number.isNaN(v))) return '';
    const s = String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  // float32 values as the shortest decimal that reads back to the same float32 (0.3, not 0.30000001192092896).
  const f32 = (v) => {
    if (!Number.isFinite(v)) return v;
    for (let p = 1; p < 9; p++) {
      const t = Number(v.toPrecision(p));
      if (Math.fround(t) === v) return t;
    }
    return v;
  };
  const cell = names.map((k) => (columns[k] instanceof Float32Array ? (i) => f32(columns[k][i]) : (i) => columns[k][i]));
  const lines = [['cell', ...names].map(quote).join(',')];
  for (let i = 0; i < n; i++) lines.push([index ? index[i] : i, ...cell.map((c) => c(i))].map(quote).join(','));
  return `${lines.join('\n')}\n`;
}

// ------------------------------------------------------------------------------ registry

/**
 * CellTypist's models index (its `models.json`: { description, last_update, models: [{ filename,
 * url, version, date, details, No_celltypes, source, default }] }) from a URL the host gives, or
 * an object; relative model URLs resolve against the index's. Nothing is fetched but the index:
 * `loadCelltypist(entry)` fetches a model when asked (the index has no checksums to check).
 */
export async function loadCelltypistIndex(source) {
  let index = source;
  let base = globalThis.location?.href;
  if (typeof source === 'string' || source instanceof URL) {
    base = new URL(String(source), base).href;
    const response = await fetch(base).catch((e) => { throw fail('invalid_file', `${source}: ${e.message}`); });
    if (!response.ok) throw fail('invalid_file', `${source}: HTTP ${response.status}`);
    index = await response.json().catch((e) => { throw fail('invalid_file', `${source}: not JSON (${e.message})`); });
  }
  if (!Array.isArray(index?.models)) throw fail('invalid_file', 'CellTypist models index: expected { models: [...] }');
  const models = index.models.map((m, i) => {
    for (const field of ['filename', 'url']) {
      if (typeof m?.[field] !== 'string' || !m[field]) throw fail('invalid_file', `CellTypist models index: models[${i}] has no '${field}'`);
    }
    return { ...m, url: base ? new URL(m.url, base).href : m.url };
  });
  return { ...index, models };
}

/**
 * A registry of atlas bundles, `{ format: 'sclabel-registry', version: 1, atlases: [{ id, name,
 * url, version, bundle_format_version, ... }] }`, from a URL (relative bundle URLs resolve against
 * it) or an object a host app built with its own URLs.
 */
export async function loadRegistry(source) {
  let registry = source;
  let base = globalThis.location?.href;
  if (typeof source === 'string' || source instanceof URL) {
    base = new URL(String(source), base).href;
    const response = await fetch(base);
    if (!response.ok) throw fail('invalid_file', `${source}: HTTP ${response.status}`);
    registry = await response.json().catch((e) => { throw fail('invalid_file', `${source}: not JSON (${e.message})`); });
  }
  if (registry?.format !== 'sclabel-registry' || !Array.isArray(registry.atlases)) {
    throw fail('invalid_file', 'registry: expected { format: "sclabel-registry", atlases: [...] }');
  }
  const absolute = (u) => (base ? new URL(u, base).href : u);
  // An entry names a model bundle (`url`, for loadAtlas) or an atlas package (`manifest`, its
  // atlas.json, for openAtlas); relative locations resolve against the registry's URL.
  const atlases = registry.atlases.map((a, i) => {
    for (const field of ['id', 'version']) {
      if (typeof a[field] !== 'string' || !a[field]) throw fail('invalid_file', `registry: atlases[${i}] has no '${field}'`);
    }
    if (typeof a.url !== 'string' && typeof a.manifest !== 'string') {
      throw fail('invalid_file', `registry: atlases[${i}] ('${a.id}') has neither 'url' (a model bundle) nor 'manifest' (an atlas package)`);
    }
    return {
      bundle_format_version: 1,
      ...a,
      ...(a.url !== undefined && { url: absolute(a.url) }),
      ...(a.manifest !== undefined && { manifest: absolute(a.manifest) }),
    };
  });
  return { ...registry, atlases };
}
