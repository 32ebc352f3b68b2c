// Streamed prediction: an .h5ad handed to predictScnym directly is read a block of cells at a time,
// never held whole. Its own file, so node --test gives it a fresh process (wasm memory only grows:
// the growth during the prediction is its high-water mark).
//
// The query (tests/h5ad_streaming.rs) is 50,000 cells × 30,000 genes with ~590 stored counts per
// cell, X stored as plain CSR (f32 values, i32 indices, i64 offsets), so the file's size is within
// a few percent of the matrix loaded whole (8 bytes per stored value). Streaming holds one block of
// ≤ 1M stored values (≤ 16 MB while decoded bytes are converted), the model's 1,000 genes of that
// block, one 1,024-cell dense batch (4 MB), and the outputs (labels, 5 probabilities, names per
// cell: ~5 MB) and the host network's buffers: ~30 MB at most (measured: 16.3 MiB, 0.076×). The bound, 0.15 of the matrix
// (~32 MB), leaves room for allocator slack; loading the query whole takes at least 1×.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'sclabel';
import { root } from './helpers.mjs';

test('a 50k-cell query predicts block by block within 0.15 of its matrix', async () => {
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
  sl.close();
});
