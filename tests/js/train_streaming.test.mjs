import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'sclabel';
import { root } from './helpers.mjs';

// Its own file, so its own process: wasm memory (a high-water mark) starts fresh.
test('scNym trains from a 50k-cell file read block by block, holding its training genes compactly', async () => {
  const file = join(root, 'target', 'tmp', 'streaming_query_50k.h5ad');
  assert.ok(existsSync(file), 'written by `cargo test` (tests/h5ad_streaming.rs); run it first');
  const sl = await open({ backend: 'cpu' });
  const before = (await sl.memoryUsage()).wasmBytes;
  const genes = Array.from({ length: 1000 }, (_, g) => `gene${g}`);
  const progress = [];
  const model = await sl.trainScnym(file, null, {
    label_key: 'cell_type', genes, normalize: true, preset: 'no_new_identity', config: { n_epochs: 1, seed: 0 },
  }, { onProgress: (e) => progress.push(e) });
  const growth = (await sl.memoryUsage()).wasmBytes - before;
  const size = statSync(file).size;
  console.log(`# trained on 50,000 cells × 1,000 of 30,000 genes from a ${(size / 2 ** 20).toFixed(0)} MiB file: wasm memory grew ${(growth / 2 ** 20).toFixed(1)} MiB (${(growth / size).toFixed(3)}× the file)`);
  assert.equal(model.genes.length, 1000);
  assert.deepEqual(model.classes, ['type0', 'type1', 'type2', 'type3', 'type4']);
  assert.ok(progress.length > 0);
  // The kept matrix is ~8.3M values × 6 bytes (50 MiB); loading the file and training on it
  // would hold its 1,000 genes at 8 bytes, a normalised copy and the training matrix.
  assert.ok(growth <= 0.4 * size, `training grew wasm memory by ${growth} bytes for a ${size}-byte file`);
  const p = await sl.predictScnym(model, file, { normalize: true, embedding: false });
  const correct = p.scNym.filter((label, i) => label === `type${i % 5}`).length;
  assert.ok(correct > 0.95 * 50_000, `accuracy ${correct / 50_000}`);
  // A reference file with a loaded query is refused, saying what to do.
  const loaded = await sl.synthetic({ nCells: 50, nGenes: 20, nClasses: 2, seed: 1 });
  await assert.rejects(sl.trainScnym(file, loaded, {}), (e) => e.code === 'invalid_option' && /query as a file too/.test(e.message));
  sl.close();
});
