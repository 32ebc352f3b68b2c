// Peak memory of loading a large .h5ad: read on demand from disk (no whole-file copy), it must stay
// within ~1.5× the CSR matrix it becomes. Its own file, so node --test gives it a fresh process
// (wasm memory only grows: its size after the load is the load's high-water mark).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'sclabel';
import { root } from './helpers.mjs';

test('a 200k-cell h5ad loads within 1.5x its CSR size', async () => {
  const file = join(root, 'target', 'tmp', 'synthetic_200k.h5ad');
  assert.ok(existsSync(file), `${file} is written by \`cargo test\` (tests/h5ad_large.rs); run it first`);
  const sl = await open({ backend: 'cpu' });
  const before = (await sl.memoryUsage()).wasmBytes;
  const data = await sl.load(file);
  const after = (await sl.memoryUsage()).wasmBytes;
  const { nnz, n_obs: nObs } = data.summary;
  assert.equal(nObs, 200_000);
  // f32 values + u32 column indices + a u64 offset per row.
  const csr = nnz * 8 + (nObs + 1) * 8;
  const growth = after - before;
  console.log(`# 200k cells, nnz ${nnz}: file ${(statSync(file).size / 2 ** 20).toFixed(1)} MiB, CSR ${(csr / 2 ** 20).toFixed(1)} MiB, `
    + `wasm memory grew ${(growth / 2 ** 20).toFixed(1)} MiB (${(growth / csr).toFixed(2)}× CSR); process RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
  assert.ok(growth <= 1.5 * csr, `wasm memory grew ${growth} bytes for a ${csr}-byte CSR`);
  sl.close();
});
