// readZarr(..., { genes }) and load(zarr, { genes }): an AnnData-Zarr store read keeping only some
// genes. The kept matrix must equal the full one's columns, normalisation must see whole cells
// (the same detected scale and totals as the full store), and memory must be the kept genes, not
// the store. Needs pkg/ (scripts/build-wasm.sh); the comparison with the .h5ad reader needs
// ../shared/data and reports itself skipped without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import init, * as wasm from '../../pkg/sclabel_wasm.js';
import { readZarr } from '../../pkg/zarr.js';
import { open } from 'sclabel';
import { root, sharedFile } from './helpers.mjs';
import { anndataStore, directoryStore, randomCsr } from './zarr_helpers.mjs';

const FIXTURES = join(root, 'tests', 'fixtures', 'zarr');
const EXPECTED = JSON.parse(readFileSync(join(FIXTURES, 'expected.json'), 'utf8'));
const exports = await init({ module_or_path: readFileSync(join(root, 'pkg', 'sclabel_wasm_bg.wasm')) });
const read = (source, options = {}) => readZarr(source, { wasm, ...options });
const close = (a, b, what, tolerance = 1e-12) => assert.ok(Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

/** The checksum `datasetChecksum` gives, of columns `kept` (in order) of a CSR matrix held in JS. */
function keptChecksum({ indptr, indices, data }, nRows, kept) {
  const col = new Map(kept.map((j, k) => [j, k]));
  let [nnz, sum, weighted] = [0, 0, 0];
  for (let i = 0; i < nRows; i++) {
    for (let p = indptr[i]; p < indptr[i + 1]; p++) {
      const k = col.get(indices[p]);
      if (k === undefined) continue;
      nnz += 1;
      sum += data[p];
      weighted += data[p] * (k + 1) * (i + 1);
    }
  }
  return { nnz, sum, weighted };
}

test('keeping 5% of the genes of a 10k × 8k CSR store: the kept columns, whole-cell normalisation, memory of the kept genes', async () => {
  // First in this file, on a fresh module: wasm memory only grows, so its growth over the load is
  // the load's high-water mark.
  const [nObs, nVars] = [10_000, 8_000];
  const x = { layout: 'csr', ...randomCsr(nObs, nVars, 0.05, 11), chunk: 1 << 17 };
  const varNames = Array.from({ length: nVars }, (_, j) => `g${j}`);
  const store = anndataStore({ obsNames: Array.from({ length: nObs }, (_, i) => `c${i}`), varNames, x });
  const kept = Array.from({ length: nVars / 20 }, (_, k) => 20 * k + 7);
  const genes = [...kept.map((j) => varNames[j]).reverse(), 'not-a-gene'];

  const beforeBytes = exports.memory.buffer.byteLength;
  const part = await read(store, { name: 'synthetic.zarr', genes });
  const growth = exports.memory.buffer.byteLength - beforeBytes;
  const full = await read(store, { name: 'synthetic.zarr' });

  // Genes stay in the store's order, whatever the order asked for.
  assert.deepEqual(part.varNames(), kept.map((j) => varNames[j]));
  const got = wasm.datasetChecksum(part).x;
  const want = keptChecksum(x, nObs, kept);
  assert.equal(got.nnz, want.nnz);
  close(got.sum, want.sum, 'sum');
  close(got.weighted, want.weighted, 'weighted');
  // Counts are detected from every value (not only the kept ones), as for the whole store.
  assert.deepEqual(part.summary().normalization, full.summary().normalization);
  assert.match(JSON.stringify(part.summary().normalization), /count/i);

  const csr = x.data.length * 8 + (nObs + 1) * 8; // f32 values + u32 indices + u64 offsets
  console.log(`# ${nObs} × ${nVars}, nnz ${x.data.length} (CSR ${(csr / 2 ** 20).toFixed(1)} MiB): keeping ${kept.length} genes grew wasm memory by ${(growth / 2 ** 20).toFixed(1)} MiB (${(growth / csr).toFixed(2)}× the full CSR)`);
  // The kept matrix (~5% of the values), the names, the whole-row statistics and one chunk of
  // each array in flight measured 0.22× here; a reader holding every value would need 1× or more.
  assert.ok(growth <= 0.3 * csr, `wasm memory grew ${growth} bytes keeping ${kept.length} of ${nVars} genes (full CSR ${csr} bytes)`);
  part.free();
  full.free();
});

for (const [name, exp] of Object.entries(EXPECTED)) {
  test(`${name}: keeping every third gene gives the .h5ad reader's kept genes and the full store's normalisation`, async (t) => {
    const path = join(FIXTURES, name);
    const source = () => (name.endsWith('.zip') ? new File([readFileSync(path)], name) : directoryStore(path));
    const full = await read(source(), { name });
    const genes = full.varNames().filter((_, j) => j % 3 === 1);
    const part = await read(source(), { name, genes });
    assert.deepEqual(part.varNames(), genes);
    assert.deepEqual(part.obsNames(), full.obsNames());
    assert.deepEqual(part.summary().normalization, full.summary().normalization, 'detected scale');
    assert.ok(wasm.datasetChecksum(part).x.nnz < wasm.datasetChecksum(full).x.nnz);

    const h5adPath = sharedFile(exp.source, t);
    if (h5adPath) {
      const bytes = readFileSync(h5adPath);
      const whole = wasm.Dataset.fromH5adReaderGenes(bytes.length, (o, n) => bytes.subarray(o, o + n), exp.source, genes);
      const h5ad = exp.rows ? whole.subset(Uint32Array.from(exp.rows)) : whole;
      assert.deepEqual(part.varNames(), h5ad.varNames());
      const [a, b] = [wasm.datasetChecksum(part), wasm.datasetChecksum(h5ad)];
      for (const m of ['x', 'raw']) {
        assert.equal(a[m]?.nnz, b[m]?.nnz, `${m} nnz`);
        assert.deepEqual([a[m]?.n_rows, a[m]?.n_cols], [b[m]?.n_rows, b[m]?.n_cols], `${m} shape`);
        if (a[m]) for (const k of ['sum', 'weighted']) close(a[m][k], b[m][k], `${m} ${k}`);
      }
      assert.deepEqual(part.summary().normalization, h5ad.summary().normalization);
      for (const d of new Set([whole, h5ad])) d.free();
    }
    full.free();
    part.free();
  });
}

test('load(zarr, { genes }) through the package, and genes none of which the store has', async () => {
  const sl = await open({ backend: 'cpu' });
  try {
    const name = 'pancreas_wang_csc.v2.zarr.zip';
    const bytes = readFileSync(join(FIXTURES, name));
    const whole = await sl.load(new File([bytes], name));
    const genes = (await sl.varNames(whole)).slice(0, 10);
    const part = await sl.load(new File([bytes], name), { genes });
    assert.deepEqual(await sl.varNames(part), genes);
    assert.equal(part.nVars, 10);
    assert.deepEqual(part.summary.normalization, whole.summary.normalization);
    await assert.rejects(sl.load(new File([bytes], name), { genes: ['NOT_A_GENE'] }), (e) => e.code === 'genes' && /none of the 1 genes asked for/.test(e.message));
  } finally {
    sl.close();
  }
});
