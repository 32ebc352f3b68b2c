// A writer of small AnnData-Zarr stores (zarr v2, uncompressed, written by hand: zarrita writes no
// string arrays): in memory for the tests (tests/js/zarr_helpers.mjs) and to a directory for the
// demo's Vitessce example (scripts/build-vitessce-example.mjs).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

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

/** anndata's element attributes for an array of strings or of numbers. */
const arrayAttrs = (values) => ({ 'encoding-type': Array.isArray(values) ? 'string-array' : 'array', 'encoding-version': '0.2.0' });

/** A dataframe group: `_index` names and string / numeric / categorical columns. */
function frame(store, path, names, columns = {}) {
  store.group(path, { _index: '_index', 'column-order': Object.keys(columns), 'encoding-type': 'dataframe', 'encoding-version': '0.2.0' });
  store.array(`${path}/_index`, names, { attrs: arrayAttrs(names) });
  for (const [name, col] of Object.entries(columns)) {
    if (col.categories) {
      store.group(`${path}/${name}`, { 'encoding-type': 'categorical', 'encoding-version': '0.2.0', ordered: false });
      store.array(`${path}/${name}/codes`, col.codes, { attrs: arrayAttrs(col.codes) });
      store.array(`${path}/${name}/categories`, col.categories, { attrs: arrayAttrs(col.categories) });
    } else {
      store.array(`${path}/${name}`, col, { attrs: arrayAttrs(col) });
    }
  }
}

/**
 * An AnnData store in memory: `x` is `{ layout: 'csr' | 'csc', indptr, indices, data, chunk }` or
 * `{ layout: 'dense', values, chunk }` (row-major; `chunk` rows per chunk); `obs` columns are typed
 * arrays, string arrays or `{ codes, categories }`; `obsm`: name → `{ values, nCols }` (row-major).
 */
export function anndataStore({ obsNames, varNames, x, obs = {}, obsm = {} }) {
  const store = new MemoryStore().group('', { 'encoding-type': 'anndata', 'encoding-version': '0.1.0' });
  frame(store, 'obs', obsNames, obs);
  frame(store, 'var', varNames);
  const shape = [obsNames.length, varNames.length];
  if (x.layout === 'dense') {
    store.array('X', x.values, { shape, chunk: x.chunk, attrs: arrayAttrs(x.values) });
  } else {
    store.group('X', { 'encoding-type': `${x.layout}_matrix`, 'encoding-version': '0.1.0', shape });
    for (const part of ['indptr', 'indices', 'data']) store.array(`X/${part}`, x[part], { chunk: x.chunk, attrs: arrayAttrs(x[part]) });
  }
  if (Object.keys(obsm).length) {
    store.group('obsm', { 'encoding-type': 'dict', 'encoding-version': '0.1.0' });
    for (const [name, m] of Object.entries(obsm)) {
      store.array(`obsm/${name}`, m.values, { shape: [obsNames.length, m.nCols], attrs: arrayAttrs(m.values) });
    }
  }
  return store;
}

/** Writes a store's keys as files under `dir` (a directory store any zarr reader opens). */
export function writeStore(store, dir) {
  for (const [key, bytes] of store.map) {
    const path = join(dir, ...key.split('/'));
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, bytes);
  }
}
