// The demo's Vitessce example (www/vitessce.html): PBMC 3k (www/data/pbmc3k_counts.h5ad, from the
// desc wheel by setup.sh) as an AnnData-Zarr that Vitessce opens and the sclabel view labels.
// X: the raw counts of the demo atlas's 765 genes (so Vitessce's dense copy is 8 MB and the atlas
// misses none); obsm X_umap: umap-js (seeded) on ln(CP10k+1) of those genes, with each cell's
// totals over all its genes. Written with the package itself (load with `genes`, `matrix`).
// Output: www/data/pbmc3k.zarr/ (ignored); rebuilt when its inputs, the writer, the package or
// this script are newer.
import { existsSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UMAP } from 'umap-js';
import { open } from 'sclabel';
import { anndataStore, writeStore } from './lib/anndata-zarr.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const query = join(root, 'www/data/pbmc3k_counts.h5ad');
const atlasData = join(root, 'www/data/pbmc68k_reduced.h5ad');
const out = join(root, 'www/data/pbmc3k.zarr');
const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);
const inputs = [query, atlasData, fileURLToPath(import.meta.url), join(root, 'scripts/lib/anndata-zarr.mjs'), join(root, 'pkg/sclabel_wasm_cpu_bg.wasm')];
if (mtime(join(out, '.zattrs')) > Math.max(...inputs.map(mtime))) {
  console.log(`Vitessce example up to date: ${out}`);
  process.exit(0);
}
const started = performance.now();
const sl = await open({ backend: 'cpu' });
try {
  const genes = await sl.varNames(await sl.load(atlasData));
  const data = await sl.load(query, { genes });
  const m = await sl.matrix(data);
  // ln(CP10k+1) with each cell's total over all its genes (the load kept them: summary median_total).
  const totals = await cellTotals(sl, query);
  const rows = Array.from({ length: m.nObs }, (_, i) => {
    const row = new Float64Array(m.nVars);
    for (let k = m.indptr[i]; k < m.indptr[i + 1]; k++) row[m.indices[k]] = Math.log1p((m.data[k] * 1e4) / totals[i]);
    return Array.from(row);
  });
  let seed = 42;
  const random = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296);
  const umap = new UMAP({ nComponents: 2, nNeighbors: 15, random }).fit(rows);
  const store = anndataStore({
    obsNames: await sl.obsNames(data),
    varNames: await sl.varNames(data),
    x: { layout: 'csr', indptr: Int32Array.from(m.indptr), indices: Int32Array.from(m.indices), data: m.data },
    obsm: { X_umap: { values: Float32Array.from(umap.flat()), nCols: 2 } },
  });
  rmSync(out, { recursive: true, force: true });
  writeStore(store, out);
  console.log(`Vitessce example: ${m.nObs} cells × ${m.nVars} genes → ${out} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
} finally {
  sl.close();
}

/** Each cell's total count over all of the file's genes. */
async function cellTotals(client, file) {
  const all = await client.load(file);
  try {
    const { nObs, indptr, data } = await client.matrix(all);
    return Float64Array.from({ length: nObs }, (_, i) => {
      let t = 0;
      for (let k = indptr[i]; k < indptr[i + 1]; k++) t += data[k];
      return t;
    });
  } finally {
    await client.free(all);
  }
}
