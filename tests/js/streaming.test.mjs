// Streamed prediction and explanation: an .h5ad handed to predictScnym / explainScnym directly is read a block of cells at a time,
// never held whole. Its own file, so node --test gives it a fresh process (wasm memory only grows:
// the growth during the prediction is its high-water mark).
//
// The query (tests/h5ad_streaming.rs) is 50,000 cells × 30,000 genes with ~590 stored counts per
// cell, X stored as plain CSR (f32 values, i32 indices, i64 offsets), so the file's size is within
// a few percent of the matrix loaded whole (8 bytes per stored value). Streaming holds one block of
// ≤ 1M stored values (≤ 16 MB while decoded bytes are converted), the model's 1,000 genes of that
// block, one 1,024-cell dense batch (4 MB), and the outputs (labels, 5 probabilities, names per
// cell: ~5 MB) and the host network's buffers: ~30 MB at most (measured: 16.3 MiB, 0.076×). The bound, 0.15 of the matrix
// (~32 MB), leaves room for allocator slack; loading the query whole takes at least 1×. Explaining
// 50 cells from the file keeps them and 10,000 reference cells (~1,000 genes each): measured 22.1
// MiB above the start, under the same bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream, existsSync, statSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { open, predictionAdditions } from 'sclabel';
import { root } from './helpers.mjs';

test('a 50k-cell query predicts and explains block by block within 0.15 of its matrix', async () => {
  const dir = join(root, 'target', 'tmp');
  const [query, reference] = [join(dir, 'streaming_query_50k.h5ad'), join(dir, 'streaming_reference.h5ad')];
  assert.ok(existsSync(query) && existsSync(reference), 'written by `cargo test` (tests/h5ad_streaming.rs); run it first');
  const sl = await open({ backend: 'cpu' });
  const ref = await sl.load(reference);
  const model = await sl.trainScnym(ref, null, { preset: 'no_new_identity', normalize: true, config: { n_epochs: 3, seed: 0 } });
  const before = (await sl.memoryUsage()).wasmBytes;
  const progress = [];
  const p = await sl.predictScnym(model, query, { normalize: true, embedding: false }, { onProgress: (e) => progress.push(e) });
  const growth = (await sl.memoryUsage()).wasmBytes - before;
  const matrix = statSync(query).size;
  console.log(`# 50k cells: file ${(matrix / 2 ** 20).toFixed(0)} MiB, wasm memory grew ${(growth / 2 ** 20).toFixed(1)} MiB `
    + `(${(growth / matrix).toFixed(3)}× the matrix) while predicting; process RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
  assert.equal(p.cells, 50_000);
  assert.equal(p.obsNames.length, 50_000);
  assert.equal(p.report.overlap.shared, 1_000);
  const correct = p.scNym.filter((label, i) => label === `type${i % 5}`).length;
  assert.ok(correct > 0.95 * 50_000, `accuracy ${correct / 50_000}`);
  // Progress counts cells done of all cells, up to every cell.
  assert.ok(progress.length > 10);
  assert.ok(progress.every((e, i) => e.cells_total === 50_000 && (i === 0 || e.cells_done >= progress[i - 1].cells_done)));
  assert.equal(progress.at(-1).cells_done, 50_000);
  assert.ok(growth <= 0.15 * matrix, `wasm memory grew ${growth} bytes for a ${matrix}-byte matrix`);

  // Explained from the file too, by the predicted labels: the cells predicted type0 against a
  // seeded sample of 10,000 of the rest; memory stays within the same bound.
  const e = await sl.explainScnym(model, query, p.scNym, { target: 'type0', n_cells: 50, n_samples: 8, normalize: true });
  const explainGrowth = (await sl.memoryUsage()).wasmBytes - before;
  console.log(`# explained 50 cells from the file: wasm memory ${(explainGrowth / 2 ** 20).toFixed(1)} MiB above the start`);
  assert.equal(e.cells.length, 50);
  assert.ok([...e.cells].every((c) => p.scNym[c] === 'type0'));
  assert.match(e.warnings.join(' '), /a seeded random sample of 10000 of the 4\d{4}/);
  assert.ok([...e.ranking.slice(0, 10)].every((g) => g < 200), 'type0 is explained by its own marker genes (0..200)');
  assert.ok(explainGrowth <= 0.15 * matrix, `explaining grew wasm memory by ${explainGrowth} bytes`);

  // The annotated .h5ad (the query is in h5py's layout): the file's bytes, then the additions —
  // never the file in wasm memory (rebuilding it would take twice its size).
  const handle = await sl.load(query, { genes: ['gene0'] });
  const annotated = await sl.exportH5ad(handle, predictionAdditions(p));
  const exportGrowth = (await sl.memoryUsage()).wasmBytes - before;
  console.log(`# annotated .h5ad: ${annotated.size - matrix} bytes appended to the ${matrix}-byte file; wasm memory ${(exportGrowth / 2 ** 20).toFixed(1)} MiB above the start`);
  assert.ok(annotated.size > matrix && annotated.size < matrix + (4 << 20), `${annotated.size} bytes`);
  assert.ok(exportGrowth <= 0.15 * matrix, `exporting grew wasm memory by ${exportGrowth} bytes`);
  const written = join(dir, 'streaming_query_annotated.h5ad');
  await pipeline(Readable.fromWeb(annotated.stream()), createWriteStream(written));
  const back = await sl.load(written, { genes: ['gene0'] });
  const [labels, types, typesBefore] = [await sl.obs(back, 'scNym'), await sl.obs(back, 'cell_type'), await sl.obs(handle, 'cell_type')];
  assert.ok(labels.length === 50_000 && labels.every((l, i) => l === p.scNym[i]), 'obs/scNym reads back as predicted');
  assert.ok(types.every((l, i) => l === typesBefore[i]), 'obs/cell_type is kept');
  rmSync(written);

  // Loaded with only the model's genes: the kept matrix (5.95M stored values, 48 MB: a fifth of
  // the whole) plus one block and obs (measured: 66.5–70.6 MiB, 0.31–0.33×), and the same predictions.
  const atLoad = (await sl.memoryUsage()).wasmBytes;
  const kept = await sl.load(query, { genes: model.genes });
  const loadGrowth = (await sl.memoryUsage()).wasmBytes - atLoad;
  console.log(`# loaded with the model's ${kept.nVars} genes: ${kept.summary.nnz} stored values kept, wasm memory grew ${(loadGrowth / 2 ** 20).toFixed(1)} MiB (${(loadGrowth / matrix).toFixed(3)}× the whole matrix)`);
  assert.equal(kept.nObs, 50_000);
  assert.equal(kept.nVars, 1_000);
  assert.equal(kept.summary.normalization.normalization.kind, 'raw_counts');
  assert.ok(loadGrowth <= 0.5 * matrix, `loading 1,000 genes grew wasm memory by ${loadGrowth} bytes`);
  const again = await sl.predictScnym(model, kept, { normalize: true, embedding: false });
  assert.deepEqual(again.scNym, p.scNym);
  // A pool of at most 10,000 cells (obs cell_type 'type1') is kept whole: the file and the loaded
  // data set explain alike.
  const o = { target: 'type0', source: 'type1', n_cells: 20, n_samples: 8, normalize: true, seed: 3 };
  const fromFile = await sl.explainScnym(model, query, 'cell_type', o);
  const fromLoaded = await sl.explainScnym(model, kept, 'cell_type', o);
  assert.deepEqual([...fromFile.cells], [...fromLoaded.cells]);
  const worst = fromFile.attributions.reduce((m, v, i) => Math.max(m, Math.abs(v - fromLoaded.attributions[i])), 0);
  assert.ok(worst < 1e-5, `largest difference ${worst}`);
  sl.close();
});

test('an audit of an .h5ad read block by block equals the audit of the loaded file', async () => {
  const reference = join(root, 'target', 'tmp', 'streaming_reference.h5ad');
  assert.ok(existsSync(reference), 'written by `cargo test` (tests/h5ad_streaming.rs); run it first');
  const sl = await open({ backend: 'cpu' });
  const options = { hvg: { n_top_genes: 500 }, train: { n_epochs: 3, seed: 1 }, reannotate: false, gene_scores: null };
  const streamed = await sl.audit(reference, options);
  const loaded = await sl.audit(await sl.load(reference), options);
  assert.equal(streamed.genes.length, 500);
  assert.deepEqual(streamed.genes, loaded.genes);
  assert.match(streamed.gene_selection, /500 highly variable genes of 1000/);
  assert.deepEqual([...streamed.conf], [...loaded.conf]);
  assert.deepEqual([...streamed.var], [...loaded.var]);
  assert.deepEqual(streamed.category, loaded.category);
  sl.close();
});
