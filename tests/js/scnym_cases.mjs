// scNym scenarios shared by the Node and browser tests; they mirror tests/scnym_native.rs so the
// results can be compared with the native build's.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { root } from './helpers.mjs';

/** Same data and options as `synthetic_transfer_is_deterministic_and_bundles_round_trip`. */
export const SYNTHETIC = { nCells: 400, nGenes: 120, nClasses: 3, seed: 11 };
export const TRANSFER = { label_key: 'cell_type', preset: 'default', normalize: true, config: { n_epochs: 4, batch_size: 64, seed: 5 } };
export const PREDICT = { normalize: true, unassigned_below: 0.999 };

/** Runs in the page or in Node: the `sclabel` module is passed in. */
export async function syntheticTransfer(sclabel, backend, { SYNTHETIC, TRANSFER, PREDICT }) {
  const sl = await sclabel.open({ backend });
  try {
    const data = await sl.synthetic(SYNTHETIC);
    const original = await sl.obs(data, 'cell_type');
    const withUnlabeled = await sl.withObs(data, 'cell_type', original.map((l, i) => (i >= 300 ? 'Unlabeled' : l)));
    const model = await sl.trainScnym(withUnlabeled, null, TRANSFER);
    const p = await sl.predictScnym(model, withUnlabeled, PREDICT);
    const bytes = await sl.saveModel(model);
    const again = await sl.predictScnym(await sl.loadModel(bytes), withUnlabeled, PREDICT);
    return {
      backend: sl.backend.backend,
      probabilities: Array.from(p.scNym_probabilities),
      reloaded: Array.from(again.scNym_probabilities),
      mode: model.info.metrics.mode,
      executors: [model.info.metrics.executor, p.executor],
      originalLabels: original.slice(300, 303),
    };
  } finally {
    sl.close();
  }
}

export function nativeProbabilities() {
  const file = join(root, 'target', 'tmp', 'native_scnym_probabilities.json');
  assert.ok(existsSync(file), `${file} is written by \`cargo test\` (tests/scnym_native.rs); run it first`);
  return JSON.parse(readFileSync(file, 'utf8'));
}

export function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** scNym's own outputs on the 3pv1 fold (../shared/reference-outputs), or null when absent. */
export function scnymReference() {
  const dir = join(root, '..', 'shared', 'reference-outputs', 'scnym-symphony-3pv1');
  if (!existsSync(dir)) return null;
  const csv = (f) => {
    const [header, ...rows] = readFileSync(join(dir, f), 'utf8').trim().split('\n');
    return { header: header.split(',').slice(1), rows: new Map(rows.map((r) => { const v = r.split(','); return [v[0], v.slice(1).map(Number)]; })) };
  };
  const list = (f) => readFileSync(join(dir, f), 'utf8').trim().split('\n');
  return {
    weights: readFileSync(join(dir, '00_best_model_weights.pkl')).toString('base64'),
    genes: list('gene_names.txt'),
    classes: list('class_names.txt'),
    probabilities: csv('scnym_probabilities.csv'),
    embedding: csv('scnym_embedding.csv'),
  };
}

/** In the page or Node: import scNym's weights, predict the 3pv1 cells. */
export async function importAndPredict(sclabel, backend, { weights, genes, classes, h5ad }) {
  const sl = await sclabel.open({ backend });
  try {
    const bytes = Uint8Array.from(atob(weights), (c) => c.charCodeAt(0));
    const model = await sl.importScnym(bytes, genes, classes);
    const all = await sl.load(h5ad);
    const donor = await sl.obs(all, 'donor');
    const query = await sl.subset(all, donor.flatMap((d, i) => (d === '3pv1' ? [i] : [])));
    const p = await sl.predictScnym(model, query, { normalize: true });
    return { backend: sl.backend.backend, cells: await sl.obsNames(query), probabilities: Array.from(p.scNym_probabilities), embedding: Array.from(p.X_scnym), dim: p.embeddingDim };
  } finally {
    sl.close();
  }
}

export function compareWithScnym(ref, out) {
  let maxP = 0, maxE = 0;
  out.cells.forEach((cell, i) => {
    const p = ref.probabilities.rows.get(cell);
    const e = ref.embedding.rows.get(cell);
    for (let k = 0; k < p.length; k++) maxP = Math.max(maxP, Math.abs(out.probabilities[i * p.length + k] - p[k]));
    for (let k = 0; k < out.dim; k++) maxE = Math.max(maxE, Math.abs(out.embedding[i * out.dim + k] - e[k]) / Math.max(1, Math.abs(e[k])));
  });
  return { maxP, maxE, cells: out.cells.length };
}
