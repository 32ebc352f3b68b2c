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
  const session = await sclabel.startSession({ backend });
  const data = await sclabel.syntheticDataset(SYNTHETIC);
  const labels = data.obs('cell_type').map((l, i) => (i >= 300 ? 'Unlabeled' : l));
  const withUnlabeled = data.withObs('cell_type', labels);
  const model = await session.trainScnym(withUnlabeled, null, TRANSFER);
  const p = await session.predictScnym(model, withUnlabeled, PREDICT);
  const bytes = await model.toBytes();
  const again = await session.predictScnym(await session.loadScnymModel(bytes), withUnlabeled, PREDICT);
  return {
    backend: session.backend.backend,
    probabilities: Array.from(p.probabilities),
    reloaded: Array.from(again.probabilities),
    mode: model.info.metrics.mode,
    originalLabels: data.obs('cell_type').slice(300, 303),
  };
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
  const session = await sclabel.startSession({ backend });
  const bytes = Uint8Array.from(atob(weights), (c) => c.charCodeAt(0));
  const model = await session.importScnym(bytes, genes, classes);
  const all = await sclabel.readH5ad(h5ad);
  const donor = all.obs('donor');
  const rows = donor.flatMap((d, i) => (d === '3pv1' ? [i] : []));
  const query = all.subset(rows);
  const p = await session.predictScnym(model, query, { normalize: true });
  return { backend: session.backend.backend, cells: query.obsNames(), probabilities: Array.from(p.probabilities), embedding: Array.from(p.embedding), dim: p.embeddingDim };
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
