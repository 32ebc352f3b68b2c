// readZarr (src/js/zarr.js) in Node: the AnnData-Zarr fixtures (tests/fixtures/zarr/, made from
// the shared .h5ad files by scripts/make-zarr-fixtures.py) from every kind of source, compared with
// what the fixture script recorded and, where ../shared/data is present, with the same data read
// from the .h5ad by the core's reader; progress, cancellation, clear errors for broken stores, and
// wasm memory while loading a larger synthetic store. Needs pkg/ (scripts/build-wasm.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import init, * as wasm from '../../pkg/sclabel_wasm.js';
import { readZarr } from '../../pkg/zarr.js';
import { startServer } from '../../scripts/serve.mjs';
import { launchChromium, root, sharedFile } from './helpers.mjs';
import { anndataStore, directoryFiles, directoryHandle, directoryStore, randomCsr } from './zarr_helpers.mjs';

const FIXTURES = join(root, 'tests', 'fixtures', 'zarr');
const EXPECTED = JSON.parse(readFileSync(join(FIXTURES, 'expected.json'), 'utf8'));
const exports = await init({ module_or_path: readFileSync(join(root, 'pkg', 'sclabel_wasm_bg.wasm')) });

const read = (source, options = {}) => readZarr(source, { wasm, ...options });
const close = (a, b, what, tolerance = 1e-9) => assert.ok(Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
// The bindings give missing values (None) as undefined; the fixture script wrote null.
const nulls = (values) => values.map((v) => v ?? null);

// ------------------------------------------------------------------ memory (first: fresh wasm memory)

test('a 20k-cell CSR store loads with wasm memory growing about its CSR size', async () => {
  // Wasm memory only grows, so its growth over one load is that load's high-water mark; this
  // test runs first in the file, on a fresh module.
  const [nObs, nVars] = [20_000, 2_000];
  const x = { layout: 'csr', ...randomCsr(nObs, nVars, 0.05, 7), chunk: 1 << 18 };
  const store = anndataStore({ obsNames: Array.from({ length: nObs }, (_, i) => `c${i}`), varNames: Array.from({ length: nVars }, (_, j) => `g${j}`), x });
  const beforeBytes = exports.memory.buffer.byteLength;
  const data = await read(store, { name: 'synthetic.zarr' });
  const growth = exports.memory.buffer.byteLength - beforeBytes;
  const nnz = x.data.length;
  // f32 values + u32 column indices + u64 row offsets.
  const csr = nnz * 8 + (nObs + 1) * 8;
  console.log(`# ${nObs} × ${nVars}, nnz ${nnz}: CSR ${(csr / 2 ** 20).toFixed(1)} MiB, wasm memory grew ${(growth / 2 ** 20).toFixed(1)} MiB (${(growth / csr).toFixed(2)}× CSR)`);
  assert.equal(wasm.datasetChecksum(data).x.nnz, nnz);
  assert.ok(growth <= 1.25 * csr, `wasm memory grew ${growth} bytes for a ${csr}-byte CSR`);
  data.free();
});

// ------------------------------------------------------------------------------ the fixtures

/** Checks a loaded Dataset against what make-zarr-fixtures.py recorded from anndata. */
function checkAgainstExpected(data, exp) {
  assert.equal(data.nObs, exp.n_obs);
  assert.equal(data.nVars, exp.n_vars);
  assert.deepEqual(data.obsNames(), exp.obs_names);
  assert.deepEqual(data.varNames(), exp.var_names);
  const sums = wasm.datasetChecksum(data);
  for (const [got, want, what] of [[sums.x, exp.x, 'X'], [sums.raw, exp.raw?.x, 'raw']]) {
    if (!want) {
      assert.equal(got ?? null, null, `${what}: none expected`);
      continue;
    }
    assert.equal(got.nnz, want.nnz, `${what} nnz`);
    close(got.sum, want.sum, `${what} sum`);
    close(got.weighted, want.weighted, `${what} weighted sum`);
  }
  const summary = data.summary();
  assert.deepEqual(summary.obs.map((c) => c.name), Object.keys(exp.obs));
  for (const col of summary.obs) {
    const want = exp.obs[col.name];
    assert.equal(col.kind, want.kind, `obs/${col.name} kind`);
    const got = nulls(data.obs(col.name));
    if (col.kind === 'numeric') {
      got.forEach((v, i) => (want.values[i] === null ? assert.equal(v, null, `obs/${col.name}[${i}]`) : close(Number(v), want.values[i], `obs/${col.name}[${i}]`)));
    } else {
      assert.deepEqual(got, want.values, `obs/${col.name}`);
    }
  }
}

/** Every way a fixture can arrive: Node store, file list, directory handle, bytes, Blob. */
async function sources(name) {
  const path = join(FIXTURES, name);
  if (name.endsWith('.zip')) {
    const bytes = await readFile(path);
    return {
      'Uint8Array': bytes,
      'ArrayBuffer': bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      'File': new File([bytes], name),
    };
  }
  return {
    'store object': directoryStore(path),
    // A stray file beside the chosen folder, as when the user picks the folder's parent.
    'webkitdirectory files': await directoryFiles(path, { extra: [['notes.txt', 'not part of the store']] }),
    'directory handle': directoryHandle(path),
  };
}

for (const [name, exp] of Object.entries(EXPECTED)) {
  test(`${name}: every source kind gives anndata's names, obs columns and matrix`, async () => {
    for (const [kind, source] of Object.entries(await sources(name))) {
      const events = [];
      const data = await read(source, { name, onProgress: (p) => events.push(p) });
      try {
        checkAgainstExpected(data, exp);
      } catch (e) {
        e.message = `${kind}: ${e.message}`;
        throw e;
      }
      const last = events.at(-1);
      assert.ok(events.length >= 2 && last.phase === 'loading' && last.done === last.total && last.total > 0, `${kind}: progress ${JSON.stringify(last)}`);
      assert.ok(events.every((p, i) => i === 0 || p.done >= events[i - 1].done), `${kind}: progress goes forward`);
      data.free();
    }
  });

  test(`${name}: the same data as the core's .h5ad reader`, async (t) => {
    const path = sharedFile(exp.source, t);
    if (!path) return;
    const bytes = readFileSync(path);
    const full = wasm.Dataset.fromH5adReader(bytes.length, (o, n) => bytes.subarray(o, o + n), exp.source);
    const h5ad = exp.rows ? full.subset(Uint32Array.from(exp.rows)) : full;
    const [src] = Object.values(await sources(name));
    const zarr = await read(src, { name });
    // Same float32 values at the same places; the sums may differ in the last bits only because
    // a file's rows can list their columns in another order (pbmc68k's .raw is unsorted in the
    // .h5ad, sorted by anndata in the Zarr copy).
    const [a, b] = [wasm.datasetChecksum(zarr), wasm.datasetChecksum(h5ad)];
    for (const m of ['x', 'raw']) {
      assert.equal(a[m]?.nnz, b[m]?.nnz, `${m} nnz`);
      assert.deepEqual([a[m]?.n_rows, a[m]?.n_cols], [b[m]?.n_rows, b[m]?.n_cols], `${m} shape`);
      if (a[m]) for (const k of ['sum', 'weighted']) close(a[m][k], b[m][k], `${m} ${k}`, 1e-12);
    }
    assert.deepEqual(zarr.varNames(), h5ad.varNames());
    assert.deepEqual(zarr.obsNames(), h5ad.obsNames());
    const kinds = new Map(h5ad.summary().obs.map((c) => [c.name, c.kind]));
    for (const col of zarr.summary().obs.filter((c) => kinds.has(c.name))) {
      assert.equal(col.kind, kinds.get(col.name), `obs/${col.name} kind`);
      assert.deepEqual(zarr.obs(col.name), h5ad.obs(col.name), `obs/${col.name}`);
    }
    for (const d of new Set([full, h5ad, zarr])) d.free();
  });
}

// ----------------------------------------------------------------------------------- over HTTP

let server;
let base;
before(async () => {
  // The fixtures over HTTP, with 404 for missing keys (what FetchStore expects of a static server).
  server = createServer(async (req, res) => {
    const path = normalize(join(FIXTURES, decodeURIComponent(new URL(req.url, 'http://x').pathname)));
    try {
      if (!path.startsWith(FIXTURES)) throw new Error('outside');
      const body = await readFile(path);
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => server?.close());

test('URLs: a store directory over HTTP and a .zip fetched whole', async () => {
  const dir = await read(`${base}/pbmc68k_reduced.v3.zarr`);
  checkAgainstExpected(dir, EXPECTED['pbmc68k_reduced.v3.zarr']);
  const zip = await read(new URL(`${base}/pancreas_wang.v3.zarr.zip`));
  checkAgainstExpected(zip, EXPECTED['pancreas_wang.v3.zarr.zip']);
  await assert.rejects(read(`${base}/missing.zarr.zip`), (e) => e.code === 'invalid_file' && /HTTP 404/.test(e.message));
  await assert.rejects(read(`${base}/missing.zarr`), (e) => e.code === 'invalid_file' && /not a Zarr store/.test(e.message));
});

// ----------------------------------------------------------------------------------- cancelling

test('cancelling between chunks rejects with code cancelled', async () => {
  const controller = new AbortController();
  let seen = 0;
  const reading = read(directoryStore(join(FIXTURES, 'pancreas_wang.v2.zarr')), {
    signal: controller.signal,
    onProgress: (p) => {
      seen += 1;
      if (p.done > 0) controller.abort();
    },
  });
  await assert.rejects(reading, (e) => e.code === 'cancelled');
  assert.ok(seen >= 2 && seen < 10, `stopped after ${seen} progress events`);
  await assert.rejects(read(directoryStore(join(FIXTURES, 'pancreas_wang.v2.zarr')), { signal: AbortSignal.abort() }), (e) => e.code === 'cancelled');
});

// ------------------------------------------------------------------------------------ errors

/** A small valid store (3 cells × 4 genes, CSR in chunks of 2) that a test then breaks. */
function small(overrides = {}) {
  return anndataStore({
    obsNames: ['a', 'b', 'c'],
    varNames: ['g0', 'g1', 'g2', 'g3'],
    x: { layout: 'csr', indptr: Int32Array.of(0, 2, 3, 5), indices: Int32Array.of(0, 2, 3, 0, 1), data: Float32Array.of(1, 2, 3, 4, 5), chunk: 2, ...overrides },
    obs: { type: { codes: Int8Array.of(0, 1, -1), categories: ['x', 'y'] }, n: Float64Array.of(1, 2, 3) },
  });
}

test('a small hand-written store reads, chunk by chunk', async () => {
  const data = await read(small(), { name: 'small.zarr' });
  assert.deepEqual(wasm.datasetChecksum(data).x, { n_rows: 3, n_cols: 4, nnz: 5, sum: 15, weighted: 1 * 1 + 2 * 3 + 3 * 4 * 2 + 4 * 1 * 3 + 5 * 2 * 3 });
  assert.deepEqual(nulls(data.obs('type')), ['x', 'y', null]);
  assert.deepEqual(data.obs('n'), ['1', '2', '3']);
  data.free();
});

test('broken input gives coded errors naming the file, the element and the problem', async () => {
  const bytes = readFileSync(join(FIXTURES, 'pancreas_wang.v3.zarr.zip'));
  const cases = [
    ['a truncated zip', bytes.subarray(0, bytes.length >> 1), 'invalid_file', /half\.zip: can't be read as a zip/],
    ['bytes that are no zip', new Uint8Array([1, 2, 3, 4]), 'invalid_file', /half\.zip: can't be read as a zip/],
    ['an empty store', new Map(), 'invalid_file', /not a Zarr store \(no zarr\.json or \.zgroup at its root\)/],
    ['a store without X', small().delete('X'), 'unsupported_layout', /'X': missing/],
    ['a 1-D X', small().delete('X').array('X', Float32Array.of(1, 2, 3)), 'unsupported_layout', /'X': a 1-D array of shape \[3\]/],
    ['an unknown X encoding', (() => { const s = small(); s.put('X/.zattrs', JSON.stringify({ 'encoding-type': 'coo_matrix', shape: [3, 4] })); return s; })(), 'unsupported_layout', /'X': a group with encoding-type 'coo_matrix'/],
    ['X of the wrong shape', (() => { const s = small(); s.put('X/.zattrs', JSON.stringify({ 'encoding-type': 'csr_matrix', shape: [3, 5] })); return s; })(), 'unsupported_layout', /shape 3 × 5 does not match the 3 obs names and 4 var names/],
    ['indices out of range', small({ indices: Int32Array.of(0, 2, 3, 0, 4) }), 'unsupported_layout', /'X\/indices': entry 4 is 4, out of range for 4 columns/],
    ['negative indices', small({ indices: Int32Array.of(0, -2, 3, 0, 1) }), 'unsupported_layout', /'X\/indices': entry 1 is -2, not a non-negative integer/],
    ['a decreasing indptr', small({ indptr: Int32Array.of(0, 3, 2, 5) }), 'unsupported_layout', /'X\/indptr': decreases at entry 2 \(3 then 2\)/],
    ['an indptr not ending at nnz', small({ indptr: Int32Array.of(0, 2, 3, 4) }), 'unsupported_layout', /'X\/indptr': ends at 4, not at nnz = 5/],
    ['a NaN in X', small({ data: Float32Array.of(1, 2, NaN, 4, 5) }), 'invalid_values', /'X\/data' has a non-finite value at 2 \(NaN/],
    ['a category code past the categories', (() => { const s = small(); s.array('obs/type/codes', Int8Array.of(0, 2, 1)); return s; })(), 'unsupported_layout', /'obs\/type\/codes': code 2 \(cell 1\) but only 2 categories/],
    ['a missing obs column', small().delete('obs/n'), 'unsupported_layout', /'obs\/n': listed in column-order but not in the store/],
    ['a chunk that does not decode', (() => {
      const s = small();
      const meta = JSON.parse(new TextDecoder().decode(s.map.get('X/data/.zarray')));
      s.put('X/data/.zarray', JSON.stringify({ ...meta, compressor: { id: 'zlib', level: 1 } })); // chunks are not zlib
      return s;
    })(), 'invalid_file', /can't be read: while reading 'X\/data'/],
    ['metadata that is not JSON', (() => { const s = small(); s.put('X/indices/.zarray', '{not json'); return s; })(), 'invalid_file', /while reading 'X\/indices'/],
  ];
  for (const [what, source, code, message] of cases) {
    await assert.rejects(read(source, { name: 'half.zip' }), (e) => {
      assert.equal(e.code, code, `${what}: ${e.message}`);
      assert.match(e.message, message, what);
      assert.match(e.message, /half\.zip/, `${what} names the file`);
      return true;
    }, what);
  }
  await assert.rejects(readZarr(small()), (e) => e.code === 'invalid_option' && /wasm module/.test(e.message));
  await assert.rejects(read(42), (e) => e.code === 'invalid_option');
});

test('obs columns in encodings the reader does not know are skipped', async () => {
  const s = small();
  s.put('obs/.zattrs', JSON.stringify({ _index: '_index', 'column-order': ['type', 'odd', 'n'], 'encoding-type': 'dataframe' }));
  s.group('obs/odd', { 'encoding-type': 'awkward-array' });
  const data = await read(s, { name: 'odd.zarr' });
  assert.deepEqual(data.summary().obs.map((c) => c.name), ['type', 'n']);
  data.free();
});

test('column names with non-ASCII letters, #, ? and % are read', async () => {
  const s = small();
  s.put('obs/.zattrs', JSON.stringify({ _index: '_index', 'column-order': ['type', 'n', 'größe #1?', '100%'], 'encoding-type': 'dataframe' }));
  s.array('obs/größe #1?', Float32Array.of(1.5, 2.5, 3.5));
  s.array('obs/100%', ['p', 'q', 'r']);
  const data = await read(s, { name: 'names.zarr' });
  assert.deepEqual(data.obs('größe #1?'), ['1.5', '2.5', '3.5']);
  assert.deepEqual(data.obs('100%'), ['p', 'q', 'r']);
  data.free();
});

// ------------------------------------------------------------------------------- in a browser

test('in Chromium: the vendored zarrita bundle decodes blosc and zstd stores from URLs and a File', async (t) => {
  const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  if (!existsSync(chromium)) return t.skip(`${chromium} not found (scripts/setup.sh installs it)`);
  const http = await startServer(0);
  const { context, close: closeBrowser } = await launchChromium({ webgpu: false });
  try {
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${http.address().port}/tests/js/harness.html`);
    const got = await page.evaluate(async (names) => {
      const wasm = await import('/pkg/sclabel_wasm.js');
      await wasm.default();
      const { readZarr } = await import('/pkg/zarr.js');
      const out = {};
      for (const name of names) {
        const url = `/tests/fixtures/zarr/${name}`;
        // A zip also as a File, as a file input gives it.
        const source = name.endsWith('.zip') && name.includes('csc') ? new File([await (await fetch(url)).blob()], name) : url;
        const d = await readZarr(source, { wasm });
        out[name] = { nObs: d.nObs, nVars: d.nVars, sums: wasm.datasetChecksum(d), obs: d.summary().obs.map((c) => c.name) };
        d.free();
      }
      return out;
    }, Object.keys(EXPECTED));
    for (const [name, exp] of Object.entries(EXPECTED)) {
      const g = got[name];
      assert.deepEqual([g.nObs, g.nVars], [exp.n_obs, exp.n_vars], name);
      assert.equal(g.sums.x.nnz, exp.x.nnz, `${name} nnz`);
      close(g.sums.x.weighted, exp.x.weighted, `${name} weighted sum`);
      assert.deepEqual(g.obs, Object.keys(exp.obs), `${name} obs columns`);
    }
    assert.deepEqual(errors, []);
  } finally {
    await closeBrowser();
    http.close();
  }
});
