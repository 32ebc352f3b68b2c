// sclabel's public JS entry point: a thin layer over the wasm bindings. Works in browsers (the wasm
// file is fetched next to this module) and in Node (read from disk; CPU backend).
import init, { Dataset, Session, version } from './sclabel_wasm.js';

let ready = null;

const isNode = typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

/** Loads the wasm module once. `wasm` may be a URL, Response, BufferSource or WebAssembly.Module. */
export function initialize({ wasm } = {}) {
  ready ??= (async () => {
    let source = wasm;
    if (source === undefined && isNode) {
      const { readFile } = await import('node:fs/promises');
      source = await readFile(new URL('./sclabel_wasm_bg.wasm', import.meta.url));
    }
    await init(source === undefined ? undefined : { module_or_path: source });
  })();
  return ready;
}

const BACKENDS = Object.freeze(['auto', 'webgpu', 'cpu']);

/** Starts a compute session. `backend`: 'auto' (WebGPU, else CPU, with the reason), 'webgpu' or 'cpu'. */
export async function startSession({ backend = 'auto' } = {}) {
  if (!BACKENDS.includes(backend)) {
    throw Object.assign(new Error(`unknown backend '${backend}'; use one of ${BACKENDS.join(', ')}`), { code: 'invalid_option' });
  }
  await initialize();
  const session = await Session.start(backend);
  return wrapSession(session);
}

function wrapSession(session) {
  return {
    /** Which backend runs: { requested, backend, adapter, reason }. */
    get backend() { return session.backend; },
    /** Trains the plain MLP on part of the labelled cells and reports held-out accuracy. */
    trainHoldout(dataset, options = {}, { onProgress, signal } = {}) {
      return session.trainHoldout(dataset, options, onProgress, signal);
    },
    /** Trains scNym: `reference` cells labelled 'Unlabeled' and all `query` cells are unlabelled. */
    trainScnym(reference, query = null, options = {}, { onProgress, signal } = {}) {
      return session.trainScnym(reference, query ?? undefined, options, onProgress, signal);
    },
    /** Labels, confidence, probabilities and embedding of `dataset`'s cells. */
    predictScnym(model, dataset, options = {}, { onProgress, signal } = {}) {
      return session.predictScnym(model, dataset, options, onProgress, signal);
    },
    /** Audits `dataset`'s annotations from training dynamics (Annotatability): conf, var, categories, corrected labels, gene scores. */
    audit(dataset, options = {}, { onProgress, signal } = {}) {
      return session.audit(dataset, options, onProgress, signal);
    },
    /** Expected-gradient gene attributions of `model`'s logit for `options.target` on the cells labelled so in obs `groupby`. */
    explainScnym(model, dataset, groupby, options = {}, { onProgress, signal } = {}) {
      return session.explainScnym(model, dataset, groupby, options, onProgress, signal);
    },
    /** Loads a model bundle from bytes, a Blob or a URL (e.g. a pretrained atlas model). */
    async loadScnymModel(source) {
      return session.loadScnymModel(await bytesOf(source, 'model bundle'));
    },
    /** Imports scNym 0.4 weights (torch.save'd state dict) with its gene and class lists. */
    async importScnym(weights, genes, classes) {
      return session.importScnym(await bytesOf(weights, 'scNym weights'), genes, classes);
    },
    dispose() { session.free(); },
  };
}

async function bytesOf(source, what) {
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (ArrayBuffer.isView(source)) return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  if (typeof Blob !== 'undefined' && source instanceof Blob) return new Uint8Array(await source.arrayBuffer());
  if (typeof source === 'string' || source instanceof URL) {
    const response = await fetch(source);
    if (!response.ok) throw Object.assign(new Error(`${source}: HTTP ${response.status}`), { code: 'invalid_file' });
    return new Uint8Array(await response.arrayBuffer());
  }
  throw Object.assign(new TypeError(`${what}: expected an ArrayBuffer, typed array, Blob or URL`), { code: 'invalid_option' });
}

/** Reads an .h5ad file from an ArrayBuffer, typed array, Blob/File or URL. */
export async function readH5ad(source, name) {
  await initialize();
  let bytes;
  let label = name;
  if (source instanceof ArrayBuffer) bytes = new Uint8Array(source);
  else if (ArrayBuffer.isView(source)) bytes = new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  else if (typeof Blob !== 'undefined' && source instanceof Blob) {
    bytes = new Uint8Array(await source.arrayBuffer());
    label ??= source.name;
  } else if (typeof source === 'string' || source instanceof URL) {
    const response = await fetch(source);
    if (!response.ok) throw Object.assign(new Error(`${source}: HTTP ${response.status}`), { code: 'invalid_file' });
    bytes = new Uint8Array(await response.arrayBuffer());
    label ??= String(source).split('/').pop();
  } else {
    throw Object.assign(new TypeError('readH5ad: expected an ArrayBuffer, typed array, Blob or URL'), { code: 'invalid_option' });
  }
  return Dataset.fromH5ad(bytes, label ?? 'input.h5ad');
}

/** Seeded synthetic raw counts with `cell_type` and `batch` obs columns (for trying things out). */
export async function syntheticDataset({ nCells = 600, nGenes = 200, nClasses = 4, seed = 0 } = {}) {
  await initialize();
  return Dataset.synthetic(nCells, nGenes, nClasses, BigInt(seed));
}

export { version };
