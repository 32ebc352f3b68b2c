// The engine: owns the wasm module, the compute session and every loaded data set and model, and
// runs the operations the public client (index.js) asks for. It runs inside a Web Worker in
// browsers (worker.js), or in the caller's thread in Node. Objects never leave it: callers hold
// plain handles ({ kind, id, ... }) that survive postMessage.
import { readZarr } from './zarr.js';
import { fail } from './errors.js';

const isNode = typeof process !== 'undefined' && process.versions?.node != null;

/**
 * The package ships two wasm modules with the same API: the full one (CPU + WebGPU) and a CPU-only
 * one, about half its size, which a page without WebGPU, or asking for the CPU, downloads instead.
 * A host that moved the full module (`wasm`) and not the CPU one (`wasmCpu`) gets the full one.
 */
function moduleKind(backend, { wasm, wasmCpu }) {
  if (wasm !== undefined && wasmCpu === undefined) return 'full';
  if (backend === 'cpu') return 'cpu';
  if (backend === 'webgpu') return 'full';
  return globalThis.navigator?.gpu ? 'full' : 'cpu';
}

const modules = new Map();

/** Instantiates a module once per thread: { glue (its namespace), exports }. `source`: URL, Response, bytes or Module. */
function instantiate(kind, source) {
  if (!modules.has(kind)) {
    modules.set(kind, (async () => {
      // Literal paths, so that bundlers see both modules.
      const glue = kind === 'cpu' ? await import('./sclabel_wasm_cpu.js') : await import('./sclabel_wasm.js');
      let s = source;
      if (s === undefined && isNode) {
        const { readFile } = await import('node:fs/promises');
        s = await readFile(new URL(kind === 'cpu' ? './sclabel_wasm_cpu_bg.wasm' : './sclabel_wasm_bg.wasm', import.meta.url));
      }
      const exports = await glue.default(s === undefined ? undefined : { module_or_path: s });
      return { glue, exports };
    })());
  }
  return modules.get(kind);
}

// --------------------------------------------------------------------------------- loading

const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
const ZIP_SIGNATURE = [0x50, 0x4b, 0x03, 0x04];

const startsWith = (bytes, sig) => bytes.length >= sig.length && sig.every((b, i) => bytes[i] === b);
const isUrl = (s) => s instanceof URL || (typeof s === 'string' && /^(https?|blob|data):/i.test(s));
const isBlob = (s) => typeof Blob !== 'undefined' && s instanceof Blob;
const nameOf = (source) => (isBlob(source) && source.name) || (typeof source === 'string' || source instanceof URL ? String(source).split(/[/\\]/).filter(Boolean).pop() : undefined);

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw fail('invalid_file', `${url}: HTTP ${response.status} ${response.statusText}`);
  return response;
}

/** All of a source's bytes (a view, not a copy, when it already is bytes). */
async function readAll(source, what) {
  const reader = await byteReader(source, what);
  try {
    return reader.readAt(0, reader.length);
  } finally {
    reader.close?.();
  }
}

/** A random-access byte reader over what the user gave: `{ length, readAt(offset, n) -> Uint8Array, keep, close? }`. */
async function byteReader(source, what) {
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    const bytes = source instanceof ArrayBuffer ? new Uint8Array(source) : new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
    return { length: bytes.length, readAt: (o, n) => bytes.subarray(o, o + n), keep: source };
  }
  if (isBlob(source)) {
    // In a worker, FileReaderSync reads slices of the file on demand: the file is never held whole.
    if (typeof FileReaderSync !== 'undefined') {
      const reader = new FileReaderSync();
      const read = (o, n) => new Uint8Array(reader.readAsArrayBuffer(source.slice(o, o + n)));
      return { length: source.size, readAt: pagedReads(read, source.size), keep: source };
    }
    return byteReader(await source.arrayBuffer(), what);
  }
  if (isUrl(source)) return byteReader(await (await fetchOk(source)).arrayBuffer(), what);
  if (isNode && typeof source === 'string') {
    const fs = await import('node:fs');
    const fd = fs.openSync(source, 'r');
    const length = fs.fstatSync(fd).size;
    const readAt = (o, n) => {
      const out = new Uint8Array(n);
      let done = 0;
      while (done < n) {
        const got = fs.readSync(fd, out, done, n - done, o + done);
        if (got === 0) throw fail('invalid_file', `${source}: file ended at ${o + done} bytes`);
        done += got;
      }
      return out;
    };
    return { length, readAt, keep: source, close: () => fs.closeSync(fd) };
  }
  throw fail('invalid_option', `${what}: expected a File/Blob, ArrayBuffer, typed array, URL${isNode ? ', file path' : ''} or AnnData-Zarr store`);
}

/**
 * Small reads served from a few cached 1 MiB pages. Each FileReaderSync read is a round trip to the
 * browser's file thread (~1 ms), and the HDF5 reader makes many small ones (object headers, chunk
 * indexes): a 100k-cell file took 107 s to predict in Chromium, against 12 s in Node.
 */
function pagedReads(read, length, { page = 1 << 20, keep = 8 } = {}) {
  const pages = new Map(); // page index → bytes, in use order
  const pageAt = (k) => {
    let bytes = pages.get(k);
    if (bytes) {
      pages.delete(k);
    } else {
      bytes = read(k * page, Math.min(page, length - k * page));
      if (pages.size >= keep) pages.delete(pages.keys().next().value);
    }
    pages.set(k, bytes);
    return bytes;
  };
  return (o, n) => {
    if (n >= page) return read(o, n);
    const first = Math.floor(o / page), last = Math.floor((o + n - 1) / page);
    if (first === last) return pageAt(first).subarray(o - first * page, o - first * page + n);
    const out = new Uint8Array(n);
    for (let k = first, done = 0; k <= last; k++) {
      const bytes = pageAt(k), from = k === first ? o - k * page : 0, to = Math.min(bytes.length, o + n - k * page);
      out.set(bytes.subarray(from, to), done);
      done += to - from;
    }
    return out;
  };
}

/** Whether the HDF5 signature is at 0 or after a user block (512, 1024, 2048 … bytes). */
function isHdf5(reader) {
  for (let offset = 0; offset + 8 <= reader.length; offset = offset ? offset * 2 : 512) {
    if (startsWith(reader.readAt(offset, 8), HDF5_SIGNATURE)) return true;
  }
  return false;
}

/** Runs `work(reader, label)` on an `.h5ad` source (File / Blob, bytes, a Node path) read on demand, never whole. */
async function withH5ad(source, op, work) {
  const label = nameOf(source) ?? 'input';
  const reader = await byteReader(source, label);
  try {
    if (!isHdf5(reader)) throw fail('invalid_file', `${label}: ${op} reads .h5ad files (HDF5) directly; load other formats with sl.load first`);
    return await work(reader, label);
  } finally {
    reader.close?.();
  }
}

/** Which reader a source needs: 'h5ad', 'zarr' (directory / store) or 'zarr-zip'. */
function formatOf(source, reader, head, format) {
  if (format && format !== 'auto') return format;
  if (head) {
    if (startsWith(head, ZIP_SIGNATURE)) return 'zarr-zip';
    if (isHdf5(reader)) return 'h5ad';
  }
  const name = nameOf(source) ?? '';
  if (/\.zip$/i.test(name)) return 'zarr-zip';
  if (/\.h5ad$/i.test(name)) return 'h5ad'; // let the reader say what is wrong with it
  if (/\.zarr\/?$/i.test(name)) return 'zarr';
  return head ? 'unknown' : 'zarr';
}

function isDirectoryLike(source) {
  return (typeof FileSystemDirectoryHandle !== 'undefined' && source instanceof FileSystemDirectoryHandle)
    || (typeof FileList !== 'undefined' && source instanceof FileList)
    || Array.isArray(source)
    || (source && typeof source === 'object' && typeof source.get === 'function' && !isBlob(source));
}

// ------------------------------------------------------------------------------------ traps

// A trap inside one of the module's async tasks does not reach the call that started it: the task
// runs from the microtask queue, so the trap is an uncaught error of the thread (a worker's `error`
// event, Node's `uncaughtException`). While calls are in flight it is caught here and rejects them.
const isTrap = (e) => e instanceof WebAssembly.RuntimeError;
let crashed = null;
const inFlight = new Set();

function crash(call, e) {
  crashed = e.message;
  const restart = isNode ? 'restart the process (a Node process holds one module instance)' : 'open a new client';
  return fail('crashed', `sclabel crashed in ${call.op}${call.phase ? ` (phase: ${call.phase})` : ''}: ${e.message}. `
    + `The module can no longer run: ${restart} — with backend 'cpu' if a lost GPU device did this; a failed allocation means the data are too big here: use fewer cells or genes, or the CLI`);
}

function onUncaught(error) {
  if (!isTrap(error) || inFlight.size === 0) return false;
  // Each call leaves `inFlight` (and the last one removes the listener) as its promise settles.
  for (const call of inFlight) call.reject(crash(call, error));
  return true;
}

const onWorkerError = (event) => { if (onUncaught(event.error)) event.preventDefault(); };
function onNodeException(error) {
  if (onUncaught(error)) return;
  // Not ours: behave as if this listener were not here.
  process.removeListener('uncaughtException', onNodeException);
  throw error;
}

function watchTraps(call) {
  if (inFlight.size === 0) {
    if (isNode) process.on('uncaughtException', onNodeException);
    else globalThis.addEventListener?.('error', onWorkerError);
  }
  inFlight.add(call);
}

function unwatchTraps(call) {
  if (!inFlight.delete(call) || inFlight.size > 0) return;
  if (isNode) process.removeListener('uncaughtException', onNodeException);
  else globalThis.removeEventListener?.('error', onWorkerError);
}

// ---------------------------------------------------------------------------------- engine

export class Engine {
  /** Starts the wasm module and a compute session ('auto' | 'webgpu' | 'cpu'). */
  static async create({ backend = 'auto', wasm: wasmSource, wasmCpu, memoryLimit } = {}) {
    const kind = moduleKind(backend, { wasm: wasmSource, wasmCpu });
    const { glue: wasm, exports } = await instantiate(kind, kind === 'cpu' ? wasmCpu : wasmSource);
    if (memoryLimit !== undefined && memoryLimit !== null && !(Number.isFinite(memoryLimit) && memoryLimit > 0)) {
      throw fail('invalid_option', `memoryLimit must be a positive number of bytes, got ${memoryLimit}`);
    }
    wasm.setMemoryLimit(memoryLimit ?? undefined);
    const session = await wasm.Session.start(backend);
    return new Engine(wasm, session, exports.memory);
  }

  /** `wasm`: the namespace of the module this engine runs (its objects belong to it). */
  constructor(wasm, session, memory) {
    this.wasm = wasm;
    this.session = session;
    this.memory = memory;
    this.objects = new Map();
    this.nextId = 1;
  }

  get backend() {
    return this.lost ? { ...this.session.backend, reason: `the GPU device was lost (${this.lost}); carrying on on the CPU` } : this.session.backend;
  }

  /**
   * After the GPU device is lost (a call failed with wgpu's "device is poisoned" / "destroyed" /
   * "lost"), the engine carries on on the CPU backend of the same module: data sets live in wasm
   * memory and are kept; models lived on the device and are refused with `device_lost`. The
   * failed call rejects with `device_lost` and may be run again. A trap instead (wgpu panicking)
   * is a `crashed` client, as before.
   */
  async onDeviceLost(op, e) {
    this.lost = String(e.message).split('\n').find((l) => /destroy|lost/i.test(l))?.trim() ?? 'lost';
    // The old session is not freed: a model made on it may still be in a handle (refused in get).
    this.session = await this.wasm.Session.start('cpu');
    return fail('device_lost', `the GPU device was lost during ${op} (${this.lost}). sclabel carries on on the CPU in this client: `
      + 'data sets are kept; models that were on the GPU are gone (train them again, or load a saved bundle); run the call again', { backend: 'cpu' });
  }

  /**
   * Runs operation `op`; returns { result, transfer } (transfer: buffers to move, not copy). A
   * trap of the wasm module (a lost GPU device, a failed allocation) rejects every call in flight
   * with a `crashed` error naming the operation and its last phase, and every later call too.
   */
  async call(op, args, controls = {}) {
    if (crashed) throw fail('crashed', `sclabel stopped working after an earlier crash (${crashed}); open a new client`);
    const fn = OPS[op];
    if (!fn) throw fail('invalid_option', `unknown operation '${op}'`);
    const call = { op, phase: null };
    const trapped = new Promise((_, reject) => { call.reject = reject; });
    trapped.catch(() => {});
    const onProgress = controls.onProgress && ((p) => { call.phase = p?.phase ?? call.phase; controls.onProgress(p); });
    const tracked = { ...controls, onProgress: onProgress ?? ((p) => { call.phase = p?.phase ?? call.phase; }) };
    watchTraps(call);
    try {
      const result = await Promise.race([fn.call(this, ...args, tracked), trapped]);
      return { result, transfer: transferables(result) };
    } catch (e) {
      if (isTrap(e)) throw crash(call, e);
      if (e?.code === 'backend' && this.session.backend.backend === 'webgpu' && DEVICE_LOST.test(e.message)) throw await this.onDeviceLost(op, e);
      throw e;
    } finally {
      unwatchTraps(call);
      // A finished or cancelled run leaves pooled GPU buffers behind; hand them back.
      if (LONG_RUNNING.has(op) && !crashed) this.session.releaseMemory();
    }
  }

  keep(kind, object, extra = {}) {
    const id = this.nextId++;
    this.objects.set(id, { kind, object, session: this.session, ...extra });
    return id;
  }

  get(handle, kind) {
    const entry = handle && this.objects.get(handle.id);
    if (!entry || entry.kind !== kind) {
      throw fail('invalid_option', `expected a ${kind} handle from this client${handle?.id ? ` (${kind} #${handle.id} was freed or belongs to another client)` : ''}`);
    }
    // scNym models hold device tensors: one made before a lost device is gone with it.
    if (kind === 'model' && this.lost && entry.session !== this.session) {
      throw fail('device_lost', `model #${handle.id} was on the GPU device that was lost (${this.lost}); train it again or load its saved bundle (saveModel) — this client now runs on the CPU`);
    }
    return entry;
  }

  datasetHandle(dataset, extra = {}) {
    const id = this.keep('dataset', dataset, extra);
    return { kind: 'dataset', id, name: extra.name ?? null, format: extra.format ?? null, nObs: dataset.nObs, nVars: dataset.nVars, summary: dataset.summary() };
  }

  modelHandle(model) {
    const id = this.keep('model', model);
    return { kind: 'model', id, classes: model.classes, genes: model.genes, info: model.info, warnings: model.warnings };
  }
}

/** An .h5ad or AnnData-Zarr from any source the package takes, as a data-set handle of `engine`. */
async function loadSource(engine, source, { name, format, genes } = {}, { onProgress, signal } = {}) {
  const label = name ?? nameOf(source) ?? 'input';
  if (isNode && typeof source === 'string' && !isUrl(source)) {
    const stat = (await import('node:fs')).statSync(source, { throwIfNoEntry: false });
    if (!stat) throw fail('invalid_file', `${source}: no such file or directory`);
    if (stat.isDirectory()) source = await nodeDirectoryStore(source);
  }
  if (!isDirectoryLike(source) || isBlob(source)) {
    const reader = await byteReader(source, label);
    try {
      const head = reader.readAt(0, Math.min(8, reader.length));
      const kind = formatOf(source, reader, head, format);
      if (kind === 'h5ad') {
        const dataset = genes
          ? engine.wasm.Dataset.fromH5adReaderGenes(reader.length, reader.readAt, label, Array.from(genes, String))
          : engine.wasm.Dataset.fromH5adReader(reader.length, reader.readAt, label);
        // The source (a File, the caller's buffer or path) is kept — not copied — for exportH5ad.
        return engine.datasetHandle(dataset, { name: label, format: 'h5ad', source: reader.keep });
      }
      if (kind === 'zarr-zip') {
        // A File / Blob is read a zip entry at a time (zarrita's ZipFileStore reads ranges of it).
        const zipped = isBlob(source) ? source : reader.readAt(0, reader.length);
        const dataset = await readZarr(zipped, { name: label, wasm: engine.wasm, onProgress, signal, genes });
        return engine.datasetHandle(dataset, { name: label, format: 'zarr' });
      }
      throw fail('invalid_file', `${label}: neither an HDF5 (.h5ad) file nor a zip (AnnData-Zarr) — its first bytes are ${Array.from(head, (b) => b.toString(16).padStart(2, '0')).join(' ')}`);
    } finally {
      reader.close?.();
    }
  }
  const dataset = await readZarr(source, { name: label, wasm: engine.wasm, onProgress, signal, genes });
  return engine.datasetHandle(dataset, { name: label, format: 'zarr' });
}

/** A prediction as the package returns it: keyed by scNym's own names for what it writes to
 * adata.obs / adata.obsm (the core's slots), with the cell count and the backend. */
function predictionResult(engine, p) {
  return { cells: p.predicted.length, ...p, backend: engine.backend };
}

/** How wgpu reports a lost or destroyed device through burn (the error's text; there is no code). */
const DEVICE_LOST = /device is poisoned|device was destroyed|device (is |was )?lost|DeviceLost/i;

/** Operations that run long enough to take progress, cancellation and GPU memory. */
const LONG_RUNNING = new Set(['predictCelltypist', 'trainScnym', 'fineTuneScnym', 'fineTuneAtlas', 'buildAtlas', 'predictScnym', 'predictPreparedRows', 'predictScnymRows', 'audit', 'explainScnym', 'trainHoldout']);

const OPS = {
  /** Not API: a deliberate trap inside an async task, so tests can check the crash path. */
  async __trapForTest() {
    return this.session.trapForTest();
  },

  backend() {
    return this.backend;
  },

  /** Bytes of wasm memory (it grows, never shrinks: this is the peak so far). */
  memoryUsage() {
    return { wasmBytes: this.memory.buffer.byteLength };
  },

  /**
   * `varNames`: a var column to use as the gene names (scanpy's `gene_symbols`). `genes`: keep
   * only these genes of X and .raw, of an .h5ad (read block by block) or an AnnData-Zarr (chunk by
   * chunk); normalisation still sees whole cells.
   */
  async load(source, { name, format, varNames, genes } = {}, controls = {}) {
    const handle = await loadSource(this, source, { name, format, genes }, controls);
    if (!varNames) return handle;
    const entry = this.get(handle, 'dataset');
    this.objects.delete(handle.id);
    try {
      return this.datasetHandle(entry.object.withVarNamesFrom(varNames), { name: entry.name, format: entry.format, source: entry.source });
    } finally {
      entry.object.free(); // the data set under its old names: nothing refers to it any more
    }
  },

  /** A data set from arrays a host already holds (index.js `fromMatrix`). */
  fromMatrix(matrix, { obsNames, varNames, obs = {}, name = 'matrix' } = {}) {
    const { nObs, nVars } = matrix ?? {};
    const sparse = matrix?.indptr !== undefined;
    if (!sparse && matrix?.dense === undefined) throw fail('invalid_option', 'fromMatrix: the matrix needs `dense` (row-major values) or `indptr`, `indices` and `data` (CSR)');
    if (!Array.isArray(obsNames) || !Array.isArray(varNames)) throw fail('invalid_option', 'fromMatrix: `obsNames` and `varNames` are required arrays');
    const builder = new this.wasm.DatasetBuilder(name, nObs, nVars, sparse ? 'csr' : 'dense', sparse ? matrix.data.length : 0);
    try {
      builder.setObsNames(obsNames.map(String));
      builder.setVarNames('X', varNames.map(String));
      if (sparse) {
        const typed = (v, As) => (ArrayBuffer.isView(v) ? v : As.from(v));
        builder.pushIndptr('X', typed(matrix.indptr, Float64Array));
        builder.pushIndices('X', typed(matrix.indices, Uint32Array));
        builder.pushData('X', typed(matrix.data, Float32Array));
      } else {
        const dense = ArrayBuffer.isView(matrix.dense) ? matrix.dense : Float32Array.from(matrix.dense);
        if (dense.length !== nObs * nVars) throw fail('invalid_option', `fromMatrix: ${dense.length} dense values for ${nObs} cells × ${nVars} genes`);
        // A band of rows at a time: wasm memory holds one band's copy, not the whole dense matrix.
        const rows = Math.max(1, Math.floor(2 ** 22 / Math.max(nVars, 1)));
        for (let r = 0; r < nObs; r += rows) builder.pushDenseRows('X', dense.subarray(r * nVars, Math.min(nObs, r + rows) * nVars));
      }
      for (const [column, values] of Object.entries(obs)) builder.addObsStrings(column, Array.from(values, (v) => (v == null ? null : String(v))));
      return this.datasetHandle(builder.finish(), { name, format: 'memory' });
    } finally {
      builder.free();
    }
  },

  synthetic({ nCells = 600, nGenes = 200, nClasses = 4, seed = 0 } = {}) {
    return this.datasetHandle(this.wasm.Dataset.synthetic(nCells, nGenes, nClasses, BigInt(seed)), { name: 'synthetic' });
  },

  subset(dataset, rows) {
    return this.datasetHandle(this.get(dataset, 'dataset').object.subset(Uint32Array.from(rows)));
  },

  withObs(dataset, column, values) {
    return this.datasetHandle(this.get(dataset, 'dataset').object.withObs(column, values));
  },

  obs(dataset, column) {
    return this.get(dataset, 'dataset').object.obs(column);
  },

  obsNames(dataset) {
    return this.get(dataset, 'dataset').object.obsNames();
  },

  varNames(dataset) {
    return this.get(dataset, 'dataset').object.varNames();
  },

  matrix(dataset) {
    return this.get(dataset, 'dataset').object.matrix();
  },

  async trainHoldout(dataset, options, { onProgress, signal } = {}) {
    return this.session.trainHoldout(this.get(dataset, 'dataset').object, options, onProgress, signal);
  },

  async trainScnym(reference, query, options, { onProgress, signal } = {}) {
    if (reference?.kind !== 'dataset') {
      // Files (File / Blob, bytes, a Node path) read a block of cells at a time, never loaded.
      if (query?.kind === 'dataset') throw fail('invalid_option', 'trainScnym: with a reference file, give the query as a file too (or load both)');
      const model = await withH5ad(reference, 'trainScnym', (r, rLabel) => (query
        ? withH5ad(query, 'trainScnym', (q, qLabel) => this.session.trainScnymH5ad(r.length, r.readAt, rLabel, q.length, q.readAt, qLabel, options, onProgress, signal))
        : this.session.trainScnymH5ad(r.length, r.readAt, rLabel, undefined, undefined, undefined, options, onProgress, signal)));
      return this.modelHandle(model);
    }
    // An optional wasm argument is consumed by the call: pass a second handle on the same data.
    const q = query ? this.get(query, 'dataset').object.share() : undefined;
    const model = await this.session.trainScnym(this.get(reference, 'dataset').object, q, options, onProgress, signal);
    return this.modelHandle(model);
  },

  async fineTuneScnym(pretrained, reference, query, options, { onProgress, signal } = {}) {
    const q = query ? this.get(query, 'dataset').object.share() : undefined;
    const model = await this.session.fineTuneScnym(this.get(pretrained, 'model').object, this.get(reference, 'dataset').object, q, options, onProgress, signal);
    return this.modelHandle(model);
  },

  /** scNym's atlas → target path; the core resolves `options` (its AtlasFineTuneOptions defaults). */
  async fineTuneAtlas(model, reference, query, { label_key, domain_key }, options, controls) {
    const resolved = this.wasm.atlasFineTuneOptions(label_key, domain_key ?? null, options ?? null);
    return OPS.fineTuneScnym.call(this, model, reference, query, resolved, controls);
  },

  /**
   * `dataset`: a data-set handle, or an `.h5ad` source (File / Blob, bytes, a Node path) that is
   * read a block of cells at a time — never loaded whole — so a file too big to load still predicts.
   */
  async predictScnym(model, dataset, options, { onProgress, signal } = {}) {
    const m = this.get(model, 'model').object;
    const p = dataset?.kind === 'dataset'
      ? await this.session.predictScnym(m, this.get(dataset, 'dataset').object, options, onProgress, signal)
      : await withH5ad(dataset, 'predictScnym', (r, label) => this.session.predictScnymH5ad(m, r.length, r.readAt, label, options, onProgress, signal));
    return predictionResult(this, p);
  },

  // A prediction split by rows across workers (parallel.js): the data set prepared here once, the
  // helpers' rows handed out, each share predicted where it lands, the outputs joined here.
  prepareScnymInput(model, dataset, options) {
    const prepared = this.session.prepareScnymInput(this.get(model, 'model').object, this.get(dataset, 'dataset').object, options);
    return { kind: 'prepared', id: this.keep('prepared', prepared), nRows: prepared.nRows, batchSize: prepared.batchSize };
  },

  preparedRows(prepared, start, end) {
    return this.get(prepared, 'prepared').object.rows(start, end);
  },

  async predictPreparedRows(model, prepared, start, end, { onProgress, signal } = {}) {
    return this.session.predictPreparedRows(this.get(model, 'model').object, this.get(prepared, 'prepared').object, start, end, onProgress, signal);
  },

  async predictScnymRows(model, rows, options, { onProgress, signal } = {}) {
    const m = this.get(model, 'model').object;
    return this.session.predictScnymRows(m, rows.nObs, rows.nVars, rows.indptr, rows.indices, rows.data, rows.rescale, rows.logFactor ?? undefined, rows.totals ?? undefined, options, onProgress, signal);
  },

  finishScnymPrediction(model, prepared, outputs) {
    return predictionResult(this, this.session.finishScnymPrediction(this.get(model, 'model').object, this.get(prepared, 'prepared').object, outputs));
  },

  /** `dataset` as for predictScnym: an `.h5ad` source keeps only the audited genes. */
  async audit(dataset, options, { onProgress, signal } = {}) {
    return dataset?.kind === 'dataset'
      ? this.session.audit(this.get(dataset, 'dataset').object, options, onProgress, signal)
      : withH5ad(dataset, 'audit', (r, label) => this.session.auditH5ad(r.length, r.readAt, label, options, onProgress, signal));
  },

  /** `dataset` as for predictScnym; `labelKey` an obs column's name or one label per cell. */
  async explainScnym(model, dataset, labelKey, options, { onProgress, signal } = {}) {
    const m = this.get(model, 'model').object;
    const e = dataset?.kind === 'dataset'
      ? await this.session.explainScnym(m, this.get(dataset, 'dataset').object, labelKey, options, onProgress, signal)
      : await withH5ad(dataset, 'explainScnym', (r, label) => this.session.explainScnymH5ad(m, r.length, r.readAt, label, labelKey, options, onProgress, signal));
    return { ...e, backend: this.backend };
  },

  async saveModel(model) {
    return this.get(model, 'model').object.toBytes();
  },

  /** atlas.json's text checked by the core (format, versions, the files it names), parsed. */
  async checkAtlasManifest(text, location) {
    return this.wasm.checkAtlasManifest(text, location);
  },

  /** A model bundle from bytes, a Blob or a URL (cached with the Cache API when `cache` names a key). */
  async loadModel(source, { cache, sha256 } = {}) {
    return this.modelHandle(this.session.loadScnymModel(await bundleBytes(source, cache, sha256)));
  },

  /** A CellTypist model (.pkl or its sclabel bundle) from bytes, a Blob or a URL (cached like bundles). */
  async loadCelltypist(source, { cache, name } = {}) {
    const model = this.session.loadCelltypist(await bundleBytes(source, cache), name ?? nameOf(source) ?? 'CellTypist model');
    const id = this.keep('celltypist', model);
    return { kind: 'celltypist', id, classes: model.classes, genes: model.genes, info: model.info };
  },

  /** `dataset` as for predictScnym: an `.h5ad` source is read a block of cells at a time. */
  async predictCelltypist(model, dataset, options, { onProgress, signal } = {}) {
    const m = this.get(model, 'celltypist').object;
    const p = dataset?.kind === 'dataset'
      ? await this.session.predictCelltypist(m, this.get(dataset, 'dataset').object, options, onProgress, signal)
      : await withH5ad(dataset, 'predictCelltypist', (r, label) => this.session.predictCelltypistH5ad(m, r.length, r.readAt, label, options, onProgress, signal));
    return { ...p, backend: this.backend };
  },

  async saveCelltypist(model) {
    return this.get(model, 'celltypist').object.toBytes();
  },

  /** An atlas's reference matrix (bytes, Blob or URL; cached like bundles), its SHA-256 checked. */
  async loadAtlasMatrix(source, { cache, sha256, name, genes } = {}) {
    const keep = genes ? Array.from(genes, String) : undefined;
    return this.datasetHandle(this.wasm.Dataset.fromAtlasMatrix(await bundleBytes(source, cache, sha256), keep), { name: name ?? 'atlas matrix', format: 'atlas' });
  },

  async buildAtlas(dataset, options, { onProgress, signal } = {}) {
    return this.session.buildAtlas(this.get(dataset, 'dataset').object, options, onProgress, signal);
  },

  async importScnym(weights, genes, classes) {
    return this.modelHandle(this.session.importScnym(await bundleBytes(weights), genes, classes));
  },

  /**
   * The data set's original .h5ad with `additions` written in (see index.d.ts: H5adAdditions), as a
   * Blob. A file h5py wrote (what anndata and scanpy save) is never read whole in the worker (only
   * its metadata; a page without the worker reads a Blob whole): the Blob is slices of the user's
   * own file, a patched run of its superblock and the appended objects. Other files are rebuilt in
   * memory, which a big one does not fit.
   */
  async exportH5ad(dataset, additions) {
    const entry = this.get(dataset, 'dataset');
    if (entry.format !== 'h5ad' || entry.source === undefined) {
      throw fail('invalid_option', `exportH5ad writes into the .h5ad a data set was loaded from; ${entry.name ? `'${entry.name}'` : 'this data set'} ${entry.format === 'zarr' ? 'was read from AnnData-Zarr' : 'was made in memory (fromMatrix / subset / withObs / synthetic)'}`);
    }
    const source = isUrl(entry.source) ? await (await fetchOk(entry.source)).blob() : entry.source;
    const { out, size } = await withH5ad(source, 'exportH5ad', (r) => ({ out: this.wasm.annotateH5adAppending(r.length, r.readAt, entry.name, additions, entry.object.nObs), size: r.length }));
    if (out.rewrite === undefined) return annotatedBlob(source, out);
    // Rebuilt in wasm memory beside the file's bytes: about twice its size.
    this.wasm.reserveMemory(`the annotated copy of ${entry.name}`, 2.2 * size, `export the predictions as CSV instead (toCsv), or annotate the file natively (sclabel predict --annotate-h5ad); this file is rebuilt rather than appended to: ${out.rewrite}`);
    return new Blob([this.wasm.annotateH5ad(await readAll(source, entry.name), entry.name, additions, entry.object.nObs)], { type: H5AD_TYPE });
  },

  free(handle) {
    const entry = handle && this.objects.get(handle.id);
    if (entry) {
      entry.object.free?.();
      this.objects.delete(handle.id);
    }
  },

  dispose() {
    for (const { object } of this.objects.values()) object.free?.();
    this.objects.clear();
    this.session.releaseMemory();
  },
};

const H5AD_TYPE = 'application/x-hdf5';

/**
 * The annotated file: the source with `patches` ([offset, bytes] pairs) written over it and `tail`
 * after it, as a Blob whose other parts are slices of the source (a File's are never read here).
 */
async function annotatedBlob(source, { patches, tail }) {
  let whole = source;
  if (isNode && typeof source === 'string') whole = await (await import('node:fs')).openAsBlob(source);
  else if (!isBlob(source)) whole = new Blob([source]);
  const parts = [];
  let at = 0;
  for (const [offset, bytes] of patches) {
    parts.push(whole.slice(at, offset), bytes);
    at = offset + bytes.length;
  }
  parts.push(whole.slice(at), tail);
  return new Blob(parts, { type: H5AD_TYPE });
}

/** A zarr store over a directory on disk (Node). */
async function nodeDirectoryStore(dir) {
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  return {
    async get(key) {
      try {
        const b = await readFile(join(dir, ...key.replace(/^\//, '').split('/')));
        return new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice();
      } catch (e) {
        if (e.code === 'ENOENT') return undefined;
        throw e;
      }
    },
  };
}

/**
 * Bundle (or atlas matrix) bytes. A URL with a cache key goes through the Cache API, one version
 * per URL; with `sha256` the bytes are checked against it.
 */
async function bundleBytes(source, cacheKey, sha256) {
  const bytes = isUrl(source) && cacheKey && typeof caches !== 'undefined' ? await cachedBytes(String(source), cacheKey) : await readAll(source, 'model bundle');
  if (sha256) await checkDigest(bytes, sha256, source);
  return bytes;
}

const CACHE_PARAM = 'sclabel-cache';

/** The Cache API ignores fragments, so the version goes into a query parameter of the key (a key only: never fetched). */
function cacheKeyOf(url, version) {
  const u = new URL(url, globalThis.location?.href);
  u.searchParams.delete(CACHE_PARAM);
  if (version !== undefined) u.searchParams.set(CACHE_PARAM, version);
  return u.href;
}

async function cachedBytes(url, version) {
  const store = await caches.open('sclabel-models');
  const key = cacheKeyOf(url, version);
  let response = await store.match(key);
  if (!response) {
    response = await fetchOk(url);
    // One version per URL: drop what older versions of this bundle left in the cache.
    const base = cacheKeyOf(url);
    for (const old of await store.keys()) if (cacheKeyOf(old.url) === base) await store.delete(old);
    await store.put(key, response.clone());
  }
  return new Uint8Array(await response.arrayBuffer());
}

async function checkDigest(bytes, expected, source) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  if (hex !== expected.toLowerCase()) throw fail('invalid_file', `${source}: sha256 is ${hex}, expected ${expected} (a corrupt or replaced file)`);
}

/** The ArrayBuffers under a result, to transfer rather than copy across postMessage. */
function transferables(value, out = [], seen = new Set()) {
  if (ArrayBuffer.isView(value)) {
    if (!seen.has(value.buffer) && value.byteLength === value.buffer.byteLength) {
      seen.add(value.buffer);
      out.push(value.buffer);
    }
  } else if (value && typeof value === 'object' && !(value instanceof ArrayBuffer)) {
    for (const v of Object.values(value)) transferables(v, out, seen);
  }
  return out;
}
