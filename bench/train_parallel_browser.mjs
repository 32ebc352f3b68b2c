// Would data-parallel training across workers pay in the browser? The two numbers that decide it,
// measured in headless Chromium (CPU backend): the time of one scNym training step in a worker,
// and the time to exchange one step's gradients between two workers (copied out of one worker's
// memory, transferred, averaged with the other's, sent back and copied in: what an all-reduce of
// two workers does once per step, for the network's parameter count). Projected speed-up of two workers:
// t_step / (t_step / 2 + t_exchange), an upper bound (it ignores the averaging itself and any
// wait for the slower worker).
//
//   bash scripts/build-wasm.sh
//   node bench/train_parallel_browser.mjs [--cells 6000] [--genes 2000] [--batch 256]
//     → bench/results/train_parallel_browser.json
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../scripts/serve.mjs';
import { launchChromium, openHarness, root } from '../tests/js/helpers.mjs';

const text = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : null;
};
const arg = (name, fallback) => Number(text(name) ?? fallback);
const spec = { nCells: arg('--cells', 6000), nGenes: arg('--genes', 2000), nClasses: 8, seed: 3 };
const batch = arg('--batch', 256);

const server = await startServer(0);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium({ webgpu: false });
try {
  const { page, errors } = await openHarness(browser, base);
  const out = await page.evaluate(async ({ spec, batch }) => {
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'cpu', predictWorkers: 1 });
    const data = await sl.synthetic(spec);
    const reference = await sl.subset(data, Array.from({ length: spec.nCells / 2 }, (_, i) => i));
    const query = await sl.subset(data, Array.from({ length: spec.nCells / 2 }, (_, i) => spec.nCells / 2 + i));
    // Epoch-end events of the second epoch onwards give seconds per step (the first holds set-up).
    const ends = [];
    const model = await sl.trainScnym(reference, query, { label_key: 'cell_type', normalize: true, config: { n_epochs: 3, batch_size: batch, seed: 1 } },
      { onProgress: (p) => { if (p.loss != null && p.phase === 'train') ends.push({ t: performance.now(), steps: p.steps_per_epoch, executor: null }); } });
    const stepMs = ends.length >= 2 ? (ends.at(-1).t - ends[0].t) / (ends.length - 1) / ends[0].steps : NaN;
    // Parameters: the layers' shapes from the bundle (safetensors header).
    const bytes = await sl.saveModel(model);
    const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
    const params = Object.entries(header).filter(([k, v]) => k !== '__metadata__' && v.dtype === 'F32').reduce((n, [, v]) => n + v.shape.reduce((a, b) => a * b, 1), 0);
    sl.close();
    // Two workers exchanging a step's gradients: out of one wasm memory (a copy), transferred,
    // into the other's (a copy), averaged there with its own, and back the same way. Timed over
    // batches of 20 round trips (a single one is below the timer's resolution here).
    const src = `let mine = null;
onmessage = (e) => {
  const g = e.data;
  mine ??= new Float32Array(g.length).fill(0.25);
  for (let i = 0; i < g.length; i++) mine[i] = 0.5 * (mine[i] + g[i]);
  const out = mine.slice();
  postMessage(out, [out.buffer]);
};`;
    const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
    const echo = new Worker(url);
    const wasmSide = new Float32Array(params).fill(0.5);
    const roundTrip = () => new Promise((ok) => {
      echo.onmessage = (e) => { wasmSide.set(e.data); ok(); };
      const out = wasmSide.slice();
      echo.postMessage(out, [out.buffer]);
    });
    for (let i = 0; i < 5; i++) await roundTrip();
    const times = [];
    for (let r = 0; r < 9; r++) {
      const t = performance.now();
      for (let i = 0; i < 20; i++) await roundTrip();
      times.push((performance.now() - t) / 20);
    }
    times.sort((x, y) => x - y);
    echo.terminate();
    const exchangeMs = times[times.length >> 1];
    return { stepMs, params, exchangeMs, projectedSpeedupTwoWorkers: stepMs / (stepMs / 2 + exchangeMs), hardwareConcurrency: navigator.hardwareConcurrency, crossOriginIsolated };
  }, { spec, batch });
  const result = {
    what: 'scNym training step time in a CPU worker, and one gradient exchange between two workers (copy out of wasm memory, transfer, average, back, copy in) of a parameter-sized Float32Array; projected two-worker speed-up t/(t/2 + exchange), an upper bound',
    date: new Date().toISOString(), spec, batch_size: batch, ...out,
    command: `node bench/train_parallel_browser.mjs --cells ${spec.nCells} --genes ${spec.nGenes} --batch ${batch}`,
  };
  const file = join(root, 'bench', 'results', 'train_parallel_browser.json');
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
  if (errors.length) console.log('page errors:', errors.map(String));
} finally {
  await browser.close();
  server.close();
}
