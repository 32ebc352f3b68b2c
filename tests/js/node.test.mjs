// The npm package in Node (wasm, CPU backend): import by package name, train, compare the loss
// curve with the native build's, read the shared data files, and report errors clearly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { open, toCsv, auditAdditions } from 'sclabel';
import { root, sharedFile } from './helpers.mjs';

test('wasm CPU training gives the native loss curve for the same seed', async () => {
  const sl = await open({ backend: 'cpu' });
  assert.equal(sl.backend.backend, 'flex');
  // Same data and options as tests/train_native.rs (synthetic seed 3, curve_options).
  const data = await sl.synthetic({ nCells: 600, nGenes: 200, nClasses: 4, seed: 3 });
  const report = await sl.trainHoldout(data, { train: { n_epochs: 5, batch_size: 64, seed: 42 } });
  const wasm = report.history.map((e) => e.loss);
  const file = join(root, 'target', 'tmp', 'native_loss_curve.json');
  assert.ok(existsSync(file), `${file} is written by \`cargo test\` (tests/train_native.rs); run it first`);
  const native = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(wasm.length, native.length);
  for (let i = 0; i < wasm.length; i++) {
    assert.ok(Math.abs(wasm[i] - native[i]) <= 1e-4 * Math.max(1, Math.abs(native[i])), `epoch ${i}: wasm ${wasm[i]} vs native ${native[i]}`);
  }
});

test('options: NaN and Infinity are refused by name; a key set to undefined is absent', async () => {
  const sl = await open({ backend: 'cpu' });
  try {
    const data = await sl.synthetic({ nCells: 200, nGenes: 40, nClasses: 3, seed: 5 });
    await assert.rejects(sl.trainHoldout(data, { train: { n_epochs: 1, lr: NaN } }),
      (e) => e.code === 'invalid_option' && /options\.train\.lr/.test(e.message) && /not a finite number/.test(e.message));
    await assert.rejects(sl.audit(data, { label_key: 'cell_type', hvg: null, cutoffs: [Infinity] }), (e) => e.code === 'invalid_option' && /options\.cutoffs\[0\]/.test(e.message));
    const r = await sl.trainHoldout(data, { train: { n_epochs: 1, batch_size: 64, seed: 1, lr: undefined } });
    assert.equal(r.history.length, 1);
  } finally {
    sl.close();
  }
});

test('synthetic training in Node learns', async () => {
  const sl = await open({ backend: 'cpu' });
  const data = await sl.synthetic({ nCells: 600, nGenes: 200, nClasses: 4, seed: 3 });
  const progress = [];
  const report = await sl.trainHoldout(data, { train: { n_epochs: 30, batch_size: 64, lr: 0.01, seed: 1 } }, { onProgress: (p) => progress.push(p) });
  assert.ok(report.test_accuracy > 0.9, `accuracy ${report.test_accuracy}`);
  assert.ok(progress.some((p) => p.loss !== null), 'epoch-end progress events carry the loss');
});

test('webgpu in Node is a clear error, and auto says why it fell back', async () => {
  await assert.rejects(open({ backend: 'webgpu' }), (e) => e.code === 'backend' && /webgpu/i.test(e.message));
  const auto = await open({ backend: 'auto' });
  assert.equal(auto.backend.backend, 'flex');
  assert.match(auto.backend.reason, /fell back to CPU because/);
  await assert.rejects(open({ backend: 'cuda' }), (e) => e.code === 'invalid_option');
});

test('non-HDF5 and truncated input give invalid_file errors', async () => {
  const sl = await open({ backend: 'cpu' });
  await assert.rejects(sl.load(new Uint8Array([1, 2, 3]), { name: 'junk.h5ad' }), (e) => e.code === 'invalid_file' && /junk\.h5ad/.test(e.message));
  await assert.rejects(sl.load(new Uint8Array(0), { name: 'empty.h5ad' }), (e) => e.code === 'invalid_file');
  const demo = join(root, 'www', 'data', 'pbmc68k_reduced.h5ad');
  if (existsSync(demo)) {
    const bytes = readFileSync(demo);
    await assert.rejects(sl.load(bytes.subarray(0, bytes.length >> 1), { name: 'half.h5ad' }), (e) => ['invalid_file', 'unsupported_layout'].includes(e.code));
  }
  sl.close();
});

const SHAPES = {
  'pbmc3k_raw_labeled.h5ad': [2700, 32738, 'cell_type', { 'Naive CD4 T': 697, 'unlabeled_QCfail': 62, Platelet: 14 }],
  'pbmc_symphony_3chemistries.h5ad': [1200, 1767, 'cell_type', { T_CD4: 373, HSC: 3 }],
  'pbmc8k_200hvg.h5ad': [7480, 200, 'cell_type', { 'CD8+ T-cells': 2740, NA: 32, Erythrocytes: 1 }],
  'pbmc68k_reduced.h5ad': [700, 765, 'bulk_labels', { 'CD14+ Monocyte': 129 }],
  'pancreas_xin.h5ad': [674, 980, 'cell_type', { alpha: 285, delta: 49 }],
  'pancreas_wang.h5ad': [501, 219, 'cell_type', { alpha: 206, acinar: 5 }],
};

for (const [name, [nObs, nVars, key, counts]] of Object.entries(SHAPES)) {
  test(`reads ${name} in wasm, from bytes and on demand from its path`, async (t) => {
    const path = sharedFile(name, t);
    if (!path) return;
    const sl = await open({ backend: 'cpu' });
    const data = await sl.load(readFileSync(path), { name });
    const streamed = await sl.load(path);
    sl.close();
    assert.deepEqual({ ...streamed, id: 0 }, { ...data, id: 0 });
    assert.equal(data.nObs, nObs);
    assert.equal(data.nVars, nVars);
    const col = data.summary.obs.find((c) => c.name === key);
    assert.ok(col, `obs column ${key}`);
    if (counts) {
      const got = Object.fromEntries(col.categories);
      for (const [k, v] of Object.entries(counts)) assert.equal(got[k], v, `${key}=${k}`);
    }
  });
}

import * as sclabel from 'sclabel';
import { SYNTHETIC, TRANSFER, PREDICT, syntheticTransfer, nativeProbabilities, maxAbsDiff, scnymReference, importAndPredict, compareWithScnym } from './scnym_cases.mjs';

test('scNym training in wasm (Node, CPU) matches the native build', async () => {
  const out = await syntheticTransfer(sclabel, 'cpu', { SYNTHETIC, TRANSFER, PREDICT });
  assert.equal(out.mode, 'mixmatch+dan');
  assert.deepEqual(out.executors, ['host', 'host']);
  assert.deepEqual(out.reloaded, out.probabilities, 'a bundle round trip predicts the same');
  const d = maxAbsDiff(out.probabilities, nativeProbabilities());
  console.log(`# scNym wasm-CPU vs native: max |Δp| = ${d.toExponential(2)}`);
  assert.ok(d < 1e-4, `max |Δp| ${d}`);
});

test('an imported scNym model reproduces scNym in wasm (Node)', async (t) => {
  const ref = scnymReference();
  const h5ad = sharedFile('pbmc_symphony_3chemistries.h5ad', t);
  if (!ref || !h5ad) return;
  const out = await importAndPredict(sclabel, 'cpu', { ...ref, h5ad: readFileSync(h5ad) });
  const { maxP, maxE, cells } = compareWithScnym(ref, out);
  console.log(`# imported scNym in Node: ${cells} cells, max |Δp| = ${maxP.toExponential(2)}, max rel |Δemb| = ${maxE.toExponential(2)}`);
  assert.equal(cells, 290);
  assert.ok(maxP < 1e-5 && maxE < 1e-4, `${maxP} ${maxE}`);
});

import { AUDIT_DATA, AUDIT, syntheticAudit, compareAudit } from './audit_cases.mjs';

test('the annotation audit in Node (wasm CPU) matches the native build', async () => {
  const out = await syntheticAudit(sclabel, 'cpu', { AUDIT_DATA, AUDIT });
  assert.equal(out.backend, 'flex');
  const { dc, dv } = compareAudit(out, 1e-4);
  console.log(`# audit in Node vs native: max |Δconf| = ${dc.toExponential(2)}, |Δvar| = ${dv.toExponential(2)}`);
});

test('misspelt option keys are refused, not ignored', async () => {
  const sl = await open({ backend: 'cpu' });
  const d = await sl.synthetic({ nCells: 100, nGenes: 20, nClasses: 2 });
  const misspelt = (e) => e.code === 'invalid_option' && /unknown field/.test(e.message);
  await assert.rejects(sl.trainHoldout(d, { bogus: 1 }), misspelt);
  await assert.rejects(sl.trainHoldout(d, { train: { epochz: 2 } }), misspelt);
  await assert.rejects(sl.audit(d, { label_keyy: 'cell_type' }), misspelt);
  await assert.rejects(sl.trainScnym(d, null, { normalise: true }), misspelt);
  sl.close();
});

test('toCsv writes float32 columns as the shortest decimals that read back to the same float32', () => {
  const values = Float32Array.from([0.3, 1 / 3, 0, 1, 1e-8, 0.1 + 0.2, NaN, 123456.789]);
  const csv = toCsv({ p: values, label: ['a', 'b,c', 'd"e', null, 'f', 'g', 'h', 'i'] });
  const lines = csv.trim().split('\n');
  assert.equal(lines[0], 'cell,p,label');
  assert.equal(lines[1], '0,0.3,a');
  assert.equal(lines[2], '1,0.33333334,"b,c"');
  assert.equal(lines[3], '2,0,"d""e"');
  assert.equal(lines[4], '3,1,');
  assert.equal(lines[7], '6,,h');
  lines.slice(1).forEach((line, i) => {
    const text = line.split(',')[1];
    if (!Number.isNaN(values[i])) assert.equal(Math.fround(Number(text)), values[i], `row ${i}: ${text}`);
  });
});

test('gene names from a named var column, and a gene selection matched by whichever column holds it', async (t) => {
  const file = sharedFile('pbmc3k_raw_labeled.h5ad', t);
  if (!file) return;
  const sl = await open({ backend: 'cpu' });
  const byIds = await sl.load(file, { varNames: 'gene_ids' });
  const ids = await sl.varNames(byIds);
  assert.match(ids[0], /^ENSG\d+/);
  assert.equal(byIds.nVars, 32738);
  // Ensembl IDs asked of a file indexed by symbols: matched through var['gene_ids'].
  const kept = await sl.load(file, { genes: ids.slice(0, 50) });
  assert.equal(kept.nVars, 50);
  assert.deepEqual(await sl.varNames(kept), ids.slice(0, 50));
  await assert.rejects(sl.load(file, { varNames: 'no_such_column' }), (e) => e.code === 'invalid_option' && /gene_ids/.test(e.message));
  sl.close();
});

test('an audit written into the user\'s .h5ad under Annotatability\'s names, mapped by the core (auditAdditions)', async (t) => {
  const file = join(root, 'www', 'data', 'pbmc68k_reduced.h5ad');
  if (!existsSync(file)) return t.skip('www/data/pbmc68k_reduced.h5ad missing: run scripts/setup.sh');
  const sl = await open({ backend: 'cpu' });
  try {
    const data = await sl.load(file);
    const a = await sl.audit(data, { label_key: 'bulk_labels', use_raw: true, hvg: { n_top_genes: 300 }, exclude_labels: ['Dendritic'], train: { n_epochs: 3, seed: 1 }, gene_scores: null });
    const blob = await sl.exportH5ad(data, auditAdditions(a));
    const again = await sl.load(new Uint8Array(await blob.arrayBuffer()), { name: 'annotated.h5ad' });
    const [labels, category, corrected] = await Promise.all(['bulk_labels', 'Annotation', 'corrected_label'].map((c) => sl.obs(again, c)));
    // The excluded cells have no category; the audited ones have theirs, at their own rows.
    labels.forEach((l, i) => assert.equal(category[i] === null, l === 'Dendritic', `${i}: ${l} → ${category[i]}`));
    a.cells.forEach((c, k) => assert.equal(category[c], a.category[k]));
    a.cells.forEach((c, k) => assert.equal(corrected[c], a.corrected_label[k]));
    const columns = again.summary.obs.map((c) => c.name);
    assert.ok(['conf', 'var', 'Annotation', 'corrected_label'].every((c) => columns.includes(c)), columns.join(','));
    // An audit written into another data set's file (of another size) is refused, not misaligned.
    const other = await sl.load(join(root, 'www', 'data', 'pbmc3k_counts.h5ad'));
    await assert.rejects(sl.exportH5ad(other, auditAdditions(a)), (e) => e.code === 'invalid_option' && /audits a data set of 700 cells/.test(e.message));
  } finally {
    sl.close();
  }
});

test('errors carry their code and, as data, where in the data they are (error.details)', async () => {
  const sl = await open({ backend: 'cpu' });
  try {
    const data = await sl.synthetic({ nCells: 120, nGenes: 30, nClasses: 3, seed: 1 });
    const one = await sl.withObs(data, 'one_type', new Array(120).fill('T'));
    await assert.rejects(sl.trainHoldout(one, { label_key: 'one_type' }), (e) => e.code === 'labels' && e.details?.column === 'one_type');
    await assert.rejects(sl.trainHoldout(data, { train: { lr: -1 } }), (e) => e.code === 'invalid_option' && e.details?.option === 'lr');
    await assert.rejects(sl.trainHoldout(data, { label_key: 'nope' }), (e) => e.code === 'column_not_found' && e.details?.column === 'nope');
    // The audit's and explanation's options are refused the same way, naming the option's path.
    await assert.rejects(sl.audit(data, { train: { lr: NaN } }), (e) => e.code === 'invalid_option' && /options\.train\.lr/.test(e.message) && /not a finite number/.test(e.message));
    await assert.rejects(sl.audit(data, { cutoffs: { kind: 'fixed', confidence: 2, variability: 0.1 } }), (e) => e.code === 'invalid_option' && e.details?.option === 'cutoffs.confidence');
    const model = await sl.trainScnym(data, null, { preset: 'no_ssl', normalize: true, config: { n_epochs: 1 } });
    await assert.rejects(sl.explainScnym(model, data, 'cell_type', { target: 'type_0', n_samples: Infinity }), (e) => e.code === 'invalid_option' && /options\.n_samples/.test(e.message));
    await assert.rejects(sl.explainScnym(model, data, 'cell_type', { target: 'type_0', n_sample: 3 }), (e) => e.code === 'invalid_option' && /n_sample/.test(e.message));
  } finally {
    sl.close();
  }
});

test('fromMatrix: a host\'s dense or CSR arrays make the data set matrix() gives back; bad shapes are refused by name', async () => {
  const sl = await open({ backend: 'cpu' });
  try {
    const data = await sl.synthetic({ nCells: 40, nGenes: 30, nClasses: 2, seed: 5 });
    const m = await sl.matrix(data);
    assert.equal(m.indptr.length, 41);
    const obsNames = await sl.obsNames(data), varNames = await sl.varNames(data);
    const labels = await sl.obs(data, 'cell_type');
    const dense = new Float32Array(m.nObs * m.nVars);
    for (let i = 0; i < m.nObs; i++) for (let k = m.indptr[i]; k < m.indptr[i + 1]; k++) dense[i * m.nVars + m.indices[k]] = m.data[k];
    for (const matrix of [{ nObs: 40, nVars: 30, dense }, { nObs: 40, nVars: 30, indptr: m.indptr, indices: m.indices, data: m.data }]) {
      const made = await sl.fromMatrix(matrix, { obsNames, varNames, obs: { cell_type: labels }, name: 'host arrays' });
      assert.equal(made.format, 'memory');
      assert.deepEqual(await sl.matrix(made), m);
      assert.deepEqual(await sl.obs(made, 'cell_type'), labels);
      assert.deepEqual(made.summary.normalization.normalization, data.summary.normalization.normalization);
    }
    await assert.rejects(sl.fromMatrix({ nObs: 40, nVars: 30, dense: dense.subarray(1) }, { obsNames, varNames }), (e) => e.code === 'invalid_option' && /1199 dense values for 40 cells × 30 genes/.test(e.message));
    await assert.rejects(sl.fromMatrix({ nObs: 40, nVars: 30, dense }, { obsNames }), (e) => e.code === 'invalid_option' && /varNames/.test(e.message));
    await assert.rejects(sl.fromMatrix({ nObs: 40, nVars: 30, dense }, { obsNames: obsNames.slice(1), varNames }), (e) => /39/.test(e.message) && /40/.test(e.message));
    await assert.rejects(sl.fromMatrix({ nObs: 40, nVars: 30 }, { obsNames, varNames }), (e) => e.code === 'invalid_option' && /dense.*CSR/.test(e.message));
  } finally {
    sl.close();
  }
});
