// Zarr stores for the Node tests of readZarr (tests/js/zarr.test.mjs): a store over a directory on
// disk, the browser's directory sources mocked over node:fs, and a writer of small uncompressed
// zarr v2 AnnData stores in memory (for synthetic and deliberately broken data sets).
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';

/** A zarrita-compatible store over a store directory (what @zarrita/storage's FileSystemStore does). */
export function directoryStore(dir) {
  return {
    async get(key) {
      try {
        // A copy with its own ArrayBuffer: zarrita decodes some chunks from `bytes.buffer`.
        return new Uint8Array(await readFile(join(dir, ...key.split('/').filter(Boolean))));
      } catch (e) {
        if (e.code === 'ENOENT' || e.code === 'EISDIR') return undefined;
        throw e;
      }
    },
  };
}

/** Every file under `dir`, as `[path relative to dir with '/', absolute path]`. */
async function walk(dir, top = dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(full, top)));
    else out.push([relative(top, full).split(sep).join('/'), full]);
  }
  return out;
}

/**
 * Files as `<input type=file webkitdirectory>` gives them for `dir`: each File's
 * webkitRelativePath starts with the chosen folder's name (`pbmc.zarr/X/zarr.json`).
 */
export async function directoryFiles(dir, { extra = [] } = {}) {
  const top = basename(dir);
  const files = [];
  for (const [rel, full] of await walk(dir)) {
    const f = new File([await readFile(full)], basename(full));
    Object.defineProperty(f, 'webkitRelativePath', { value: `${top}/${rel}` });
    files.push(f);
  }
  for (const [path, text] of extra) {
    const f = new File([text], basename(path));
    Object.defineProperty(f, 'webkitRelativePath', { value: path });
    files.push(f);
  }
  return files;
}

const domError = (name) => Object.assign(new Error(`${name} (mock)`), { name });

/** A FileSystemDirectoryHandle look-alike over `dir` (the parts readZarr uses). */
export function directoryHandle(dir) {
  const child = async (name, wantDir) => {
    const p = join(dir, name);
    const s = await stat(p).catch(() => null);
    if (!s) throw domError('NotFoundError');
    if (s.isDirectory() !== wantDir) throw domError('TypeMismatchError');
    return p;
  };
  return {
    kind: 'directory',
    name: basename(dir),
    async getDirectoryHandle(name) {
      return directoryHandle(await child(name, true));
    },
    async getFileHandle(name) {
      const p = await child(name, false);
      return { kind: 'file', name, getFile: async () => new File([await readFile(p)], name) };
    },
  };
}

// ------------------------------------------------------------------ in-memory zarr v2 stores

const DTYPES = {
  Float32Array: '<f4', Float64Array: '<f8', Int8Array: '|i1', Int16Array: '<i2', Int32Array: '<i4',
  BigInt64Array: '<i8', Uint8Array: '|u1', Uint16Array: '<u2', Uint32Array: '<u4', BigUint64Array: '<u8',
};

/** numcodecs' VLenUTF8 encoding: item count, then each item's byte length and UTF-8 bytes. */
function vlenUtf8(strings) {
  const parts = strings.map((s) => new TextEncoder().encode(s));
  const out = new Uint8Array(4 + parts.reduce((n, p) => n + 4 + p.length, 0));
  const view = new DataView(out.buffer);
  view.setUint32(0, strings.length, true);
  let pos = 4;
  for (const p of parts) {
    view.setUint32(pos, p.length, true);
    out.set(p, pos + 4);
    pos += 4 + p.length;
  }
  return out;
}

/**
 * A zarr v2 store in memory with uncompressed chunks, written by hand (zarrita writes no string
 * arrays). `store.group(path, attrs)`, `store.array(path, typedArrayOrStrings, { chunk, shape,
 * attrs })`; `store.delete(prefix)` drops a node. Keys are exactly what zarrita asks for.
 */
export class MemoryStore {
  constructor() {
    this.map = new Map();
    this.reads = 0;
  }

  async get(key) {
    this.reads += 1;
    return this.map.get(key.replace(/^\/+/, ''));
  }

  put(key, value) {
    this.map.set(key, typeof value === 'string' ? new TextEncoder().encode(value) : value);
  }

  group(path, attrs = {}) {
    const at = path ? `${path}/` : '';
    this.put(`${at}.zgroup`, JSON.stringify({ zarr_format: 2 }));
    this.put(`${at}.zattrs`, JSON.stringify(attrs));
    return this;
  }

  array(path, values, { chunk, shape, attrs = {} } = {}) {
    const strings = Array.isArray(values);
    const n = values.length;
    shape ??= [n];
    const rowLen = shape.slice(1).reduce((a, b) => a * b, 1);
    const chunkRows = chunk ?? shape[0];
    const meta = {
      zarr_format: 2, shape, chunks: [chunkRows, ...shape.slice(1)], order: 'C', compressor: null,
      dtype: strings ? '|O' : DTYPES[values.constructor.name],
      filters: strings ? [{ id: 'vlen-utf8' }] : null,
      fill_value: strings ? '' : 0,
    };
    this.put(`${path}/.zarray`, JSON.stringify(meta));
    this.put(`${path}/.zattrs`, JSON.stringify(attrs));
    for (let k = 0; k * chunkRows < Math.max(shape[0], 1) && shape[0] > 0; k++) {
      const key = `${path}/${[k, ...shape.slice(1).map(() => 0)].join('.')}`;
      if (strings) {
        const part = values.slice(k * chunkRows * rowLen, (k + 1) * chunkRows * rowLen);
        while (part.length < chunkRows * rowLen) part.push('');
        this.put(key, vlenUtf8(part));
      } else {
        // Edge chunks are stored at full size (padded), as zarr v2 does.
        const full = new values.constructor(chunkRows * rowLen);
        full.set(values.subarray(k * chunkRows * rowLen, Math.min(n, (k + 1) * chunkRows * rowLen)));
        this.put(key, new Uint8Array(full.buffer));
      }
    }
    return this;
  }

  delete(prefix) {
    for (const k of [...this.map.keys()]) if (k === prefix || k.startsWith(`${prefix}/`)) this.map.delete(k);
    return this;
  }
}

/** A dataframe group: `_index` names and string / numeric / categorical columns. */
function frame(store, path, names, columns = {}) {
  store.group(path, { _index: '_index', 'column-order': Object.keys(columns), 'encoding-type': 'dataframe', 'encoding-version': '0.2.0' });
  store.array(`${path}/_index`, names, { attrs: { 'encoding-type': 'string-array' } });
  for (const [name, col] of Object.entries(columns)) {
    if (col.categories) {
      store.group(`${path}/${name}`, { 'encoding-type': 'categorical', 'encoding-version': '0.2.0', ordered: false });
      store.array(`${path}/${name}/codes`, col.codes);
      store.array(`${path}/${name}/categories`, col.categories);
    } else {
      store.array(`${path}/${name}`, col);
    }
  }
}

/**
 * An AnnData store in memory: `x` is `{ layout: 'csr' | 'csc', indptr, indices, data, chunk }` or
 * `{ layout: 'dense', values, chunk }` (row-major; `chunk` rows per chunk).
 */
export function anndataStore({ obsNames, varNames, x, obs = {} }) {
  const store = new MemoryStore().group('', { 'encoding-type': 'anndata', 'encoding-version': '0.1.0' });
  frame(store, 'obs', obsNames, obs);
  frame(store, 'var', varNames);
  const shape = [obsNames.length, varNames.length];
  if (x.layout === 'dense') {
    store.array('X', x.values, { shape, chunk: x.chunk });
  } else {
    store.group('X', { 'encoding-type': `${x.layout}_matrix`, 'encoding-version': '0.1.0', shape });
    for (const part of ['indptr', 'indices', 'data']) store.array(`X/${part}`, x[part], { chunk: x.chunk });
  }
  return store;
}

/** Seeded uniform numbers in [0, 1) (mulberry32), so synthetic data sets repeat. */
export function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random CSR matrix as typed arrays (about `density` of the entries stored, values 1..10). */
export function randomCsr(nRows, nCols, density, seed) {
  const next = random(seed);
  const indptr = new Int32Array(nRows + 1);
  const indices = [];
  const data = [];
  for (let i = 0; i < nRows; i++) {
    for (let j = 0; j < nCols; j++) {
      if (next() < density) {
        indices.push(j);
        data.push(1 + Math.floor(next() * 10));
      }
    }
    indptr[i + 1] = indices.length;
  }
  return { indptr, indices: Int32Array.from(indices), data: Float32Array.from(data) };
}
