// AnnData-Zarr reader: zarrita (bundled into ./vendor/zarrita.js) decodes the store chunk by chunk,
// and each chunk goes straight into the wasm core's DatasetBuilder, which validates it and builds
// the CSR matrix. The whole matrix is never held in JS, nor twice in wasm (sparse arrays are
// reserved once at their final size; dense chunks are converted to CSR as they arrive).
//
// Reads what anndata's write_zarr writes, zarr v2 or v3: X dense (2-D array) or sparse (group with
// encoding-type csr_matrix / csc_matrix, data / indices / indptr and a shape attribute), .raw
// (raw/X, raw/var), the obs dataframe (categoricals, strings, numbers, booleans, and the nullable
// integer / boolean / string arrays; other encodings are skipped, as the .h5ad reader does) and
// the var index. Errors carry `.code`, as the core's do: 'invalid_file' (not a readable zip or
// Zarr store, a chunk that fails to decode), 'unsupported_layout' (an AnnData element missing or
// laid out in a way this reader does not read), 'cancelled', 'invalid_option' (a bad argument).
import * as zarr from './vendor/zarrita.js';

/** An Error with a stable `.code`, like the ones the wasm core throws. */
function fail(code, message, cause) {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

const cancelled = () => fail('cancelled', 'cancelled');

/** Errors from this module or the wasm core carry a snake_case `.code` (Node's are 'ENOENT', DOM's numbers). */
const isCoded = (e) => typeof e?.code === 'string' && /^[a-z_]+$/.test(e.code);

/**
 * Reads an AnnData-Zarr store into a wasm `Dataset`.
 *
 * `source`: a zarrita-compatible store (`{ get(key) -> Promise<Uint8Array | undefined> }`); a
 * Blob / File of a zipped store; an ArrayBuffer / typed array of one; a URL (string or URL) of a
 * `.zip` (fetched whole) or of a store directory served over HTTP; a FileSystemDirectoryHandle
 * (showDirectoryPicker); or an array / FileList of Files carrying `webkitRelativePath`
 * (`<input type=file webkitdirectory>`). A zip or a file list may hold the store in a top folder.
 *
 * `wasm`: the wasm-bindgen module namespace (`import * as wasm from './sclabel_wasm.js'`, already
 * initialised). `name` labels error messages. `onProgress({ phase: 'loading', done, total })`
 * counts matrix elements read; `signal` (AbortSignal) cancels between chunks. `genes` (names):
 * keep only those genes of X and `.raw` (matched by the var index); the core still sees every
 * value, so each cell's totals and the detected scale are those of the whole matrix, while memory
 * is the kept genes plus one chunk of each array.
 */
export async function readZarr(source, { name, wasm, onProgress, signal, genes } = {}) {
  if (typeof wasm?.DatasetBuilder !== 'function') {
    throw fail('invalid_option', 'readZarr: pass the wasm module namespace as `wasm` (import * as wasm from "./sclabel_wasm.js")');
  }
  if (genes != null && (typeof genes === 'string' || typeof genes[Symbol.iterator] !== 'function')) {
    throw fail('invalid_option', 'readZarr: `genes` must be an array of gene names');
  }
  if (signal?.aborted) throw cancelled();
  const { store, label } = await openStore(source, name);
  return new ZarrReader(store, label, wasm, onProgress, signal, genes == null ? null : Array.from(genes, String)).read();
}

// ------------------------------------------------------------------------------------- stores

const isBlob = (s) => typeof Blob !== 'undefined' && s instanceof Blob;
const isDirectoryHandle = (s) => s != null && typeof s === 'object' && s.kind === 'directory' && typeof s.getDirectoryHandle === 'function';
const isFileList = (s) => (typeof FileList !== 'undefined' && s instanceof FileList) || (Array.isArray(s) && s.length > 0 && s.every(isBlob));
const isStore = (s) => s != null && typeof s === 'object' && typeof s.get === 'function' && !isBlob(s) && !Array.isArray(s);
const lastSegment = (path) => decodeURIComponent(path.split('/').filter(Boolean).pop() ?? '');

/** The store for `source`, and a label for messages. */
async function openStore(source, name) {
  if (isDirectoryHandle(source)) return { store: new DirectoryHandleStore(source), label: name ?? source.name };
  if (isFileList(source)) {
    const store = new FileListStore(Array.from(source));
    return { store, label: name ?? store.rootName };
  }
  if (isBlob(source)) return zipStore(source, name ?? source.name ?? 'input.zarr.zip');
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    const bytes = source instanceof ArrayBuffer ? new Uint8Array(source) : new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
    return zipStore(bytes, name ?? 'input.zarr.zip');
  }
  if (typeof source === 'string' || source instanceof URL) {
    let url;
    try {
      url = new URL(source, globalThis.location?.href);
    } catch {
      throw fail('invalid_option', `readZarr: '${source}' is not a URL${globalThis.location ? '' : ' (relative URLs need a page to resolve against; in Node pass a store object)'}`);
    }
    const label = name ?? (lastSegment(url.pathname) || url.host);
    if (/\.zip$/i.test(url.pathname)) {
      let response;
      try {
        response = await fetch(url);
      } catch (e) {
        throw fail('invalid_file', `${label}: can't be fetched: ${e.message}`, e);
      }
      if (!response.ok) throw fail('invalid_file', `${label}: HTTP ${response.status} ${response.statusText} for ${url.href}`);
      return zipStore(await response.blob(), label);
    }
    return { store: new zarr.FetchStore(url.href), label };
  }
  if (isStore(source)) return { store: ownBuffers(source), label: name ?? 'store' };
  throw fail('invalid_option', 'readZarr: expected a Zarr store object, a zip (File, Blob, ArrayBuffer or typed array), a URL, a FileSystemDirectoryHandle or a list of Files from a directory');
}

/**
 * A caller's store whose values are each given their own buffer: zarrita's string decoder reads
 * `bytes.buffer` from offset 0, so a view into a larger buffer (a Node Buffer from a pool, a
 * slice of a bigger file) would decode the wrong bytes.
 */
function ownBuffers(store) {
  const own = (b) => (b && (b.byteOffset !== 0 || b.byteLength !== b.buffer.byteLength) ? new Uint8Array(b) : b); // a copy (Buffer#slice would share)
  const wrapped = { get: async (key, options) => own(await store.get(key, options)) };
  if (typeof store.getRange === 'function') wrapped.getRange = async (key, range, options) => own(await store.getRange(key, range, options));
  return wrapped;
}

/**
 * Where the store's root sits among `paths`: '' when `zarr.json` / `.zgroup` is at the top, or
 * the folder holding the shallowest one (`zip -r x.zip x.zarr`, a picked parent directory);
 * null when there is none.
 */
function storeRoot(paths) {
  let best = null;
  for (const p of paths) {
    const m = /(?:^|\/)(zarr\.json|\.zgroup)$/.exec(p);
    if (!m) continue;
    const dir = p.slice(0, p.length - m[1].length);
    if (best === null || dir.split('/').length < best.split('/').length) best = dir;
  }
  return best;
}

/** A zipped store (zarrita's ZipFileStore); a store held in a top folder is read from there. */
async function zipStore(zipped, label) {
  let root = '';
  const store = isBlob(zipped) ? zarr.ZipFileStore.fromBlob(zipped, { transformEntries }) : new zarr.ZipFileStore(zipped, { transformEntries });
  function transformEntries(entries) {
    root = storeRoot(Object.keys(entries)) ?? '';
    if (!root) return entries;
    return Object.fromEntries(Object.entries(entries).filter(([k]) => k.startsWith(root)).map(([k, v]) => [k.slice(root.length), v]));
  }
  try {
    await store.info; // the zip's directory: a truncated or non-zip file fails here
  } catch (e) {
    throw fail('invalid_file', `${label}: can't be read as a zip: ${e.message}`, e);
  }
  return { store, label };
}

const notFound = (e) => e?.name === 'NotFoundError' || e?.name === 'TypeMismatchError';

/** A store over a FileSystemDirectoryHandle (the File System Access API's showDirectoryPicker). */
class DirectoryHandleStore {
  constructor(handle) {
    this.dirs = new Map([['', Promise.resolve(handle)]]);
  }

  /** The directory handle for a relative path, looked up once per folder. */
  dir(path) {
    if (!this.dirs.has(path)) {
      const cut = path.lastIndexOf('/');
      const parent = this.dir(cut < 0 ? '' : path.slice(0, cut));
      this.dirs.set(path, parent.then((d) => d.getDirectoryHandle(path.slice(cut + 1))));
    }
    return this.dirs.get(path);
  }

  async file(key) {
    const path = key.replace(/^\/+/, '');
    const cut = path.lastIndexOf('/');
    try {
      const dir = await this.dir(cut < 0 ? '' : path.slice(0, cut));
      return await (await dir.getFileHandle(path.slice(cut + 1))).getFile();
    } catch (e) {
      if (notFound(e)) return undefined;
      throw e;
    }
  }

  async get(key) {
    const f = await this.file(key);
    return f && new Uint8Array(await f.arrayBuffer());
  }

  async getRange(key, range) {
    const f = await this.file(key);
    return f && sliceOf(f, range);
  }
}

/** A store over the Files of `<input type=file webkitdirectory>` (each has a webkitRelativePath). */
class FileListStore {
  constructor(files) {
    const byPath = new Map(files.map((f) => [f.webkitRelativePath || f.name, f]));
    const root = storeRoot(byPath.keys());
    if (root === null) {
      throw fail('invalid_file', `${files.length} files chosen, none of them a zarr.json or .zgroup: not an AnnData-Zarr directory`);
    }
    this.files = new Map();
    for (const [p, f] of byPath) if (p.startsWith(root)) this.files.set(p.slice(root.length), f);
    this.rootName = lastSegment(root) || 'input.zarr';
  }

  async get(key) {
    const f = this.files.get(key.replace(/^\/+/, ''));
    return f && new Uint8Array(await f.arrayBuffer());
  }

  async getRange(key, range) {
    const f = this.files.get(key.replace(/^\/+/, ''));
    return f && sliceOf(f, range);
  }
}

/** A byte range of a File (`{ offset, length }` or `{ suffixLength }`), as stores return it. */
async function sliceOf(file, range) {
  const part = 'suffixLength' in range ? file.slice(file.size - range.suffixLength) : file.slice(range.offset, range.offset + range.length);
  return new Uint8Array(await part.arrayBuffer());
}

// ------------------------------------------------------------------------------------- reading

const NUMERIC = new Set(['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float32', 'float64', 'bool']);
const NULLABLE = new Set(['nullable-integer', 'nullable-boolean', 'nullable-string-array']);

/** zarrita's BoolArray as the Uint8Array under it; typed arrays as they are. */
function plain(data) {
  return data instanceof zarr.BoolArray ? new Uint8Array(data.buffer, data.byteOffset, data.length) : data;
}

/** A number as pandas prints it (integers without a fraction), for numeric names / categories. */
function formatValue(v) {
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  return String(v);
}

/** Any 1-D array's values as strings (names, categories); null when they aren't strings or numbers. */
function toStrings(data) {
  if (Array.isArray(data)) return data.map((v) => (v == null ? '' : String(v)));
  if (data instanceof zarr.BoolArray) return Array.from(data, formatValue);
  if (data != null && typeof data[Symbol.iterator] === 'function' && typeof data !== 'string') return Array.from(data, formatValue);
  return null;
}

class ZarrReader {
  constructor(store, label, wasm, onProgress, signal, genes) {
    Object.assign(this, { store, label, wasm, onProgress, signal, genes });
    this.done = 0;
    this.total = 0;
  }

  unsupported(element, reason) {
    return fail('unsupported_layout', `${this.label}: unsupported or malformed AnnData element '${element}': ${reason}`);
  }

  /** Runs a zarrita call, turning its failures into coded errors that name `element`. */
  async guard(element, fn) {
    if (this.signal?.aborted) throw cancelled();
    try {
      return await fn();
    } catch (e) {
      if (isCoded(e)) throw e; // already ours or the core's
      if (this.signal?.aborted || e?.name === 'AbortError') throw cancelled();
      throw fail('invalid_file', `${this.label}: can't be read: while reading '${element}': ${e?.message ?? e}`, e);
    }
  }

  /**
   * The array or group at `path` ('obs/cell_type'), or null when there is none. `kind` ('array' |
   * 'group') where only one makes sense: zarr v2 then reads malformed metadata as an error
   * instead of trying the other kind and reporting the node missing.
   */
  async node(path, kind) {
    // Each segment percent-encoded: zarrita resolves keys as URLs and decodes them again, so names
    // with '#', '?' or '%' survive.
    const location = new zarr.Location(this.store, `/${path.split('/').map(encodeURIComponent).join('/')}`);
    try {
      return await this.guard(path, () => this.open(location, { kind, signal: this.signal }));
    } catch (e) {
      if (e.code === 'invalid_file' && e.cause?.name === 'NotFoundError') return null;
      throw e;
    }
  }

  /** A whole (small, 1-D) array: obs columns, names, categories. */
  async values(arr, path) {
    if (arr.shape.length !== 1) throw this.unsupported(path, `a ${arr.shape.length}-D array of shape [${arr.shape}] (expected 1-D)`);
    return (await this.guard(path, () => zarr.get(arr, null, { signal: this.signal }))).data;
  }

  async strings(arr, path) {
    const out = toStrings(await this.values(arr, path));
    if (!out) throw this.unsupported(path, `${arr.dtype} values (expected strings)`);
    return out;
  }

  progress(n) {
    this.done += n;
    this.onProgress?.({ phase: 'loading', done: this.done, total: this.total });
  }

  async read() {
    // Zarr v3 stores have zarr.json at the root, v2 stores .zgroup; every node is then opened in
    // that version only (auto-detection costs a failed request per node over HTTP).
    const rootLocation = new zarr.Location(this.store);
    let root = null;
    for (const open of [zarr.open.v3, zarr.open.v2]) {
      try {
        root = await this.guard('/', () => open(rootLocation, { kind: 'group', signal: this.signal }));
        this.open = open;
        break;
      } catch (e) {
        if (e.code !== 'invalid_file' || e.cause?.name !== 'NotFoundError') throw e;
      }
    }
    if (!root) throw fail('invalid_file', `${this.label}: not a Zarr store (no zarr.json or .zgroup at its root)`);

    const obs = await this.frame('obs');
    const var_ = await this.frame('var');
    const x = await this.matrix('X', obs.names.length, var_.names.length);
    const raw = await this.rawParts(obs.names.length);
    this.total = x.elements + (raw?.matrix.elements ?? 0);

    const builder = new this.wasm.DatasetBuilder(this.label, obs.names.length, var_.names.length, x.layout, x.nnz);
    try {
      builder.setObsNames(obs.names);
      builder.setVarNames('X', var_.names);
      if (this.genes) builder.keepGenes('X', this.genes);
      this.progress(0);
      await this.push(builder, 'X', x);
      if (raw) {
        builder.beginRaw(raw.names.length, raw.matrix.layout, raw.matrix.nnz);
        builder.setVarNames('raw', raw.names);
        if (this.genes) builder.keepGenes('raw', this.genes);
        await this.push(builder, 'raw', raw.matrix);
      }
      await this.columns(builder, obs);
      if (this.signal?.aborted) throw cancelled();
      return builder.finish();
    } finally {
      builder.free();
    }
  }

  // ------------------------------------------------------------------------------ dataframes

  /** A dataframe group's index (names) and what is needed to read its columns. */
  async frame(path) {
    const group = await this.node(path);
    if (!group) throw this.unsupported(path, 'missing (is this an AnnData Zarr store?)');
    if (group.kind !== 'group') throw this.unsupported(path, `an array (expected a dataframe group)`);
    const attrs = group.attrs ?? {};
    let indexName = attrs._index;
    let index = null;
    if (typeof indexName === 'string') {
      index = await this.node(`${path}/${indexName}`, 'array');
    } else {
      for (const candidate of ['_index', 'index']) {
        index = await this.node(`${path}/${candidate}`, 'array');
        if (index) {
          indexName = candidate;
          break;
        }
      }
    }
    if (!index || index.kind !== 'array') {
      throw this.unsupported(`${path}/${indexName ?? '_index'}`, typeof indexName === 'string' ? "the dataframe's index column is missing" : "dataframe without an '_index' attribute or index column");
    }
    const names = await this.strings(index, `${path}/${indexName}`);
    // column-order lists the columns (a store can't always be listed, e.g. over HTTP).
    const order = Array.isArray(attrs['column-order']) ? attrs['column-order'].filter((c) => typeof c === 'string') : [];
    return { path, names, indexName, order };
  }

  /** Adds each obs column in an encoding this reader knows; others are skipped. */
  async columns(builder, frame) {
    const seen = new Set([frame.indexName]);
    for (const name of frame.order) {
      if (seen.has(name)) continue;
      seen.add(name);
      const path = `${frame.path}/${name}`;
      const node = await this.node(path);
      if (!node) throw this.unsupported(path, 'listed in column-order but not in the store');
      if (node.kind === 'group') await this.groupColumn(builder, node, name, path);
      else await this.arrayColumn(builder, node, name, path, frame);
    }
  }

  async groupColumn(builder, group, name, path) {
    const enc = group.attrs?.['encoding-type'];
    if (enc === 'categorical' || enc === undefined) {
      const [codes, categories] = [await this.node(`${path}/codes`, 'array'), await this.node(`${path}/categories`, 'array')];
      if (enc === undefined && !(codes && categories)) return; // not a column we know
      for (const [part, node] of [['codes', codes], ['categories', categories]]) {
        if (node?.kind !== 'array') throw this.unsupported(`${path}/${part}`, 'missing from the categorical column');
      }
      await this.categorical(builder, name, path, codes, categories);
      return;
    }
    if (!NULLABLE.has(enc)) return;
    const values = await this.node(`${path}/values`, 'array');
    if (values?.kind !== 'array' || values.shape.length !== 1) return;
    const maskNode = await this.node(`${path}/mask`, 'array');
    let mask;
    if (maskNode) {
      if (maskNode.kind !== 'array' || maskNode.shape.length !== 1 || maskNode.shape[0] !== values.shape[0]) {
        throw this.unsupported(`${path}/mask`, 'mask does not match its values');
      }
      mask = plain(await this.values(maskNode, `${path}/mask`));
    }
    if (enc === 'nullable-string-array') {
      const v = await this.strings(values, `${path}/values`);
      builder.addObsStrings(name, mask ? v.map((s, i) => (mask[i] ? null : s)) : v);
      return;
    }
    if (!NUMERIC.has(values.dtype)) return;
    const v = plain(await this.values(values, `${path}/values`));
    if (enc === 'nullable-integer') builder.addObsNumeric(name, v, mask);
    else builder.addObsBool(name, v, mask);
  }

  async arrayColumn(builder, arr, name, path, frame) {
    if (arr.shape.length !== 1) return;
    // anndata 0.7: a codes array whose `categories` attribute points at __categories/<name>.
    if (arr.attrs?.categories !== undefined) {
      const categories = await this.node(`${frame.path}/__categories/${name}`, 'array');
      if (categories?.kind === 'array') await this.categorical(builder, name, path, arr, categories);
      return;
    }
    if (arr.dtype === 'bool') {
      builder.addObsBool(name, plain(await this.values(arr, path)));
    } else if (NUMERIC.has(arr.dtype)) {
      builder.addObsNumeric(name, await this.values(arr, path));
    } else {
      const v = toStrings(await this.values(arr, path));
      if (v) builder.addObsStrings(name, v);
    }
  }

  async categorical(builder, name, path, codes, categories) {
    if (!NUMERIC.has(codes.dtype) || codes.dtype === 'bool') throw this.unsupported(`${path}/codes`, `category codes of ${codes.dtype} (expected integers)`);
    const cats = await this.strings(categories, `${path}/categories`);
    builder.addObsCategorical(name, await this.values(codes, `${path}/codes`), cats);
  }

  // -------------------------------------------------------------------------------- matrices

  /** What X (or raw/X) is, checked against the names read before it, without reading values. */
  async matrix(path, nObs, nVars) {
    const node = await this.node(path);
    if (!node) throw this.unsupported(path, path === 'X' ? 'missing (the store has no X matrix; is it an AnnData store?)' : 'missing');
    const checkShape = (shape) => {
      if (shape[0] !== nObs || shape[1] !== nVars) {
        throw this.unsupported(path, `shape ${shape[0]} × ${shape[1]} does not match the ${nObs} obs names and ${nVars} var names`);
      }
    };
    if (node.kind === 'array') {
      if (node.shape.length !== 2) throw this.unsupported(path, `a ${node.shape.length}-D array of shape [${node.shape}] (expected a 2-D matrix)`);
      if (!NUMERIC.has(node.dtype)) throw this.unsupported(path, `a dense matrix of ${node.dtype} (expected numbers)`);
      checkShape(node.shape);
      return { layout: 'dense', nnz: 0, arr: node, path, elements: nObs * nVars };
    }
    const attrs = node.attrs ?? {};
    const enc = attrs['encoding-type'] ?? attrs.h5sparse_format;
    const layout = { csr_matrix: 'csr', csr: 'csr', csc_matrix: 'csc', csc: 'csc' }[enc];
    if (!layout) {
      throw this.unsupported(path, enc === undefined ? 'a group without an encoding-type (expected a csr_matrix or csc_matrix)' : `a group with encoding-type '${enc}' (expected csr_matrix or csc_matrix)`);
    }
    const shape = attrs.shape ?? attrs.h5sparse_shape;
    if (!Array.isArray(shape) || shape.length !== 2) throw this.unsupported(path, "sparse matrix without a 2-element 'shape' attribute");
    checkShape(shape);
    const parts = {};
    for (const part of ['indptr', 'indices', 'data']) {
      const arr = await this.node(`${path}/${part}`, 'array');
      if (arr?.kind !== 'array') throw this.unsupported(`${path}/${part}`, 'missing from the sparse matrix');
      if (arr.shape.length !== 1) throw this.unsupported(`${path}/${part}`, `a ${arr.shape.length}-D array (expected 1-D)`);
      if (!NUMERIC.has(arr.dtype)) throw this.unsupported(`${path}/${part}`, `${arr.dtype} values (expected numbers)`);
      if (!(arr.chunks[0] >= 1)) throw this.unsupported(`${path}/${part}`, `chunk shape [${arr.chunks}]`);
      parts[part] = arr;
    }
    const nnz = parts.data.shape[0];
    if (parts.indices.shape[0] !== nnz) throw this.unsupported(path, `${parts.indices.shape[0]} indices but ${nnz} values`);
    const major = layout === 'csr' ? nObs : nVars;
    if (parts.indptr.shape[0] !== major + 1) {
      throw this.unsupported(`${path}/indptr`, `${parts.indptr.shape[0]} entries for a ${nObs} × ${nVars} matrix (expected ${major} + 1)`);
    }
    return { layout, nnz, parts, path, elements: major + 1 + 2 * nnz };
  }

  /** `.raw`, when the store has one: its var names and matrix description. */
  async rawParts(nObs) {
    const node = await this.node('raw');
    // anndata 0.12 writes a missing .raw as a scalar array with encoding-type 'null'.
    if (!node || node.kind !== 'group') return null;
    const var_ = await this.frame('raw/var');
    return { names: var_.names, matrix: await this.matrix('raw/X', nObs, var_.names.length) };
  }

  /**
   * Pushes a matrix's chunks into the builder: indptr whole, then indices and data in step (the
   * next chunk of whichever is behind), so a builder keeping some genes pairs them as they come.
   */
  async push(builder, target, m) {
    if (m.layout === 'dense') return this.pushDense(builder, target, m);
    const methods = { indptr: 'pushIndptr', indices: 'pushIndices', data: 'pushData' };
    const streams = Object.fromEntries(['indptr', 'indices', 'data'].map((part) => {
      const arr = m.parts[part];
      return [part, { part, arr, n: arr.shape[0], step: arr.chunks[0], next: 0, element: `${m.path}/${part}` }];
    }));
    const pushNext = async (s) => {
      const k = s.next / s.step;
      const chunk = await this.guard(s.element, () => s.arr.getChunk([k], { signal: this.signal }));
      // An edge chunk decodes to the full chunk length; only the first `count` are the array's.
      const count = Math.min(s.step, s.n - s.next);
      builder[methods[s.part]](target, plain(chunk.data).subarray(0, count));
      s.next += count;
      this.progress(count);
    };
    while (streams.indptr.next < streams.indptr.n) await pushNext(streams.indptr);
    const { indices, data } = streams;
    while (indices.next < indices.n || data.next < data.n) {
      const behind = indices.next <= data.next ? [indices, data] : [data, indices];
      await pushNext(behind.find((stream) => stream.next < stream.n));
    }
  }

  /** A dense matrix a chunk at a time: row bands top to bottom, each band's chunks left to right. */
  async pushDense(builder, target, m) {
    const { arr, path } = m;
    const [nRows, nCols] = arr.shape;
    const [cr, cc] = arr.chunks;
    if (!(cr >= 1 && cc >= 1)) throw this.unsupported(path, `chunk shape [${arr.chunks}]`);
    for (let i = 0; i * cr < nRows; i++) {
      for (let j = 0; j * cc < nCols; j++) {
        const chunk = await this.guard(path, () => arr.getChunk([i, j], { signal: this.signal }));
        const rows = Math.min(cr, nRows - i * cr);
        const cols = Math.min(cc, nCols - j * cc);
        builder.pushDenseBlock(target, i * cr, j * cc, rows, cols, plain(chunk.data), chunk.stride[0], chunk.stride[1]);
        this.progress(rows * cols);
      }
    }
  }
}
