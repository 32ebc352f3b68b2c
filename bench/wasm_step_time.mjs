// Time per training step of the plain MLP in wasm under Node (CPU backend), for comparing builds
// (e.g. flex vs ndarray): node bench/wasm_step_time.mjs [pkgDir] [genes] [batch] [steps]
// Each run trains one epoch of `steps` minibatches; the first run warms up, the median of the rest
// is reported.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [pkgDir = 'pkg', genes = '2000', batch = '256', steps = '20'] = process.argv.slice(2);
const { startSession, syntheticDataset } = await import(pathToFileURL(resolve(pkgDir, 'index.js')).href);
const [g, b, s] = [Number(genes), Number(batch), Number(steps)];
const session = await startSession({ backend: 'cpu' });
const data = await syntheticDataset({ nCells: b * s, nGenes: g, nClasses: 10, seed: 0 });
const options = { test_fraction: 0, train: { n_epochs: 1, batch_size: b, seed: 0 } };
const times = [];
for (let round = 0; round < 4; round++) {
  const t0 = performance.now();
  await session.trainHoldout(data, options);
  if (round > 0) times.push((performance.now() - t0) / s);
}
times.sort((x, y) => x - y);
console.log(JSON.stringify({ pkg: pkgDir, backend: session.backend.backend, genes: g, batch: b, steps: s, ms_per_step: +times[1].toFixed(1) }));
