// 2-D projections of the scNym embedding (X_scnym), off the page's thread: PCA first (fitted on
// ≤ 20k cells, shown at once), then UMAP (umap-js, PAIR's port) epoch by epoch. Above 50k cells
// both run on a seeded uniform sample of 50k cells (`rows`, sorted cell indices), which is all the
// view draws: umap-js's exact neighbour search and a scatter of every cell of a 1M-cell query do not
// fit a tab, and 50k points already show every population of more than a few dozen cells.
// Messages in: { embedding: Float32Array, n, d, seed, maxCells? }. Out: { kind: 'pca' | 'umap', xy, rows }
// (rows null = every cell), { kind: 'progress', epoch, nEpochs }, { kind: 'error', message }.
import { UMAP } from './vendor/umap-js.js';

/** mulberry32: a small seeded RNG, so the same cells give the same layout. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PCA_FIT_CELLS = 20_000; // the components are fitted on at most this many cells, all are projected
const MAX_CELLS = 50_000; // umap-js (exact NN descent, JS arrays) gets too slow and large beyond this

/** `k` distinct indices of 0..n, sorted (Floyd's algorithm: k draws, no n-sized array). */
export function sampleRows(n, k, random) {
  const picked = new Set();
  for (let j = n - k; j < n; j++) {
    const t = Math.floor(random() * (j + 1));
    picked.add(picked.has(t) ? j : t);
  }
  return Uint32Array.from(picked).sort();
}

/** Top-2 principal components by power iteration with deflation, fitted on a seeded sample of rows. */
function pca2(x, n, d, random) {
  const rows = n <= PCA_FIT_CELLS ? null : Uint32Array.from({ length: PCA_FIT_CELLS }, () => Math.floor(random() * n));
  const fitN = rows ? rows.length : n;
  const at = rows ? (i) => rows[i] : (i) => i;
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x[i * d + j] / n;
  const comps = [];
  const xy = new Float32Array(n * 2);
  for (let c = 0; c < 2; c++) {
    let v = Float64Array.from({ length: d }, () => random() - 0.5);
    const proj = new Float64Array(fitN);
    for (let it = 0; it < 60; it++) {
      for (let i = 0; i < fitN; i++) {
        const r = at(i);
        let s = 0;
        for (let j = 0; j < d; j++) s += (x[r * d + j] - mean[j]) * v[j];
        proj[i] = s;
      }
      const next = new Float64Array(d);
      for (let i = 0; i < fitN; i++) {
        const r = at(i);
        for (let j = 0; j < d; j++) next[j] += (x[r * d + j] - mean[j]) * proj[i];
      }
      for (const u of comps) { // deflate: stay orthogonal to earlier components
        let dot = 0;
        for (let j = 0; j < d; j++) dot += next[j] * u[j];
        for (let j = 0; j < d; j++) next[j] -= dot * u[j];
      }
      const norm = Math.hypot(...next) || 1;
      v = next.map((t) => t / norm);
    }
    comps.push(v);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += (x[i * d + j] - mean[j]) * v[j];
      xy[i * 2 + c] = s;
    }
  }
  return xy;
}

self.onmessage = ({ data: { embedding, n: nCells, d, seed = 0, maxCells = MAX_CELLS } }) => {
  try {
    const random = rng(seed);
    const rows = nCells > maxCells ? sampleRows(nCells, maxCells, random) : null;
    const n = rows ? rows.length : nCells;
    const x = rows ? new Float32Array(n * d) : embedding;
    rows?.forEach((r, i) => x.set(embedding.subarray(r * d, (r + 1) * d), i * d));
    const pca = pca2(x, n, d, random);
    self.postMessage({ kind: 'pca', xy: pca, rows }, [pca.buffer]);
    if (n < 5) return; // UMAP needs neighbours; PCA is the projection of tiny sets
    const points = Array.from({ length: n }, (_, i) => Array.from(x.subarray(i * d, (i + 1) * d)));
    const umap = new UMAP({ nComponents: 2, nNeighbors: Math.min(15, n - 1), minDist: 0.3, random });
    const nEpochs = umap.initializeFit(points);
    for (let e = 0; e < nEpochs; e++) {
      umap.step();
      if (e % 10 === 0) self.postMessage({ kind: 'progress', epoch: e, nEpochs });
    }
    const xy = Float32Array.from(umap.getEmbedding().flat());
    self.postMessage({ kind: 'umap', xy, rows }, [xy.buffer]);
  } catch (e) {
    self.postMessage({ kind: 'error', message: String(e?.message ?? e) });
  }
};
