// What the WebGPU path costs per step, counted where the browser meets the GPU: scNym training and
// prediction on WebGPU in headless Chromium, with the page's GPU objects instrumented (compute
// dispatches, queue submits, buffer writes and their bytes, buffer maps — each map is a read the
// host waits for —, buffer and pipeline creation). SwiftShader (a CPU emulation) makes the times
// meaningless, but the calls are the ones a real GPU would get: the same wgpu and burn code issues
// them. The engine runs in the page (`open({ worker: false })`), so the instrumented prototypes
// are the ones it calls.
//
//   bash scripts/build-wasm.sh
//   node bench/gpu_dispatch_browser.mjs [--cells 1500] [--genes 400] [--batch 256] [--epochs 2] [--out NAME]
//     → bench/results/NAME.json (default gpu_dispatch_browser.json)
//
// Per training step: the calls between two progress events of the same epoch after the first
// (shaders compiled), divided by the steps between them. Per epoch: the calls between two
// epoch-end events. Per prediction batch: the calls of predictScnym divided by its batches.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../scripts/serve.mjs';
import { launchChromium, openHarness, root } from '../tests/js/helpers.mjs';

const text = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : null;
};
const arg = (name, fallback) => Number(text(name) ?? fallback);
const spec = { nCells: arg('--cells', 1500), nGenes: arg('--genes', 400), nClasses: 6, seed: 7 };
const batch = arg('--batch', 256);
const epochs = arg('--epochs', 2);
const outName = text('--out') ?? 'gpu_dispatch_browser';

const server = await startServer(0);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium({ webgpu: true });
try {
  const { page, errors } = await openHarness(browser, base);
  const out = await page.evaluate(async ({ spec, batch, epochs }) => {
    const counts = { dispatch: 0, submit: 0, writeBuffer: 0, bytesWritten: 0, mapAsync: 0, copyBufferToBuffer: 0, createBuffer: 0, bytesAllocated: 0, createComputePipeline: 0, createBindGroup: 0 };
    const wrap = (proto, name, count) => {
      const original = proto[name];
      proto[name] = function (...args) { count(...args); return original.apply(this, args); };
    };
    wrap(GPUComputePassEncoder.prototype, 'dispatchWorkgroups', () => counts.dispatch++);
    wrap(GPUComputePassEncoder.prototype, 'dispatchWorkgroupsIndirect', () => counts.dispatch++);
    wrap(GPUQueue.prototype, 'submit', () => counts.submit++);
    wrap(GPUQueue.prototype, 'writeBuffer', (buffer, offset, data, dataOffset = 0, size) => {
      counts.writeBuffer++;
      counts.bytesWritten += size !== undefined ? size * (data.BYTES_PER_ELEMENT ?? 1) : (data.byteLength - dataOffset * (data.BYTES_PER_ELEMENT ?? 1));
    });
    wrap(GPUBuffer.prototype, 'mapAsync', () => counts.mapAsync++);
    wrap(GPUCommandEncoder.prototype, 'copyBufferToBuffer', () => counts.copyBufferToBuffer++);
    wrap(GPUDevice.prototype, 'createBuffer', (d) => { counts.createBuffer++; counts.bytesAllocated += d.size; });
    wrap(GPUDevice.prototype, 'createComputePipeline', () => counts.createComputePipeline++);
    wrap(GPUDevice.prototype, 'createBindGroup', () => counts.createBindGroup++);
    const snap = () => ({ ...counts });
    const diff = (a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, b[k] - a[k]]));
    const per = (d, n) => Object.fromEntries(Object.entries(d).map(([k, v]) => [k, Math.round((v / n) * 100) / 100]));

    const { open } = await import('sclabel');
    const sl = await open({ backend: 'webgpu', worker: false });
    const data = await sl.synthetic(spec);
    const reference = await sl.subset(data, Array.from({ length: Math.floor(spec.nCells * 0.6) }, (_, i) => i));
    const query = await sl.subset(data, Array.from({ length: spec.nCells - Math.floor(spec.nCells * 0.6) }, (_, i) => Math.floor(spec.nCells * 0.6) + i));
    const events = [];
    const started = snap();
    const model = await sl.trainScnym(reference, query, {
      label_key: 'cell_type', normalize: true, preset: 'new_identity_discovery',
      config: { n_epochs: epochs, batch_size: batch, seed: 1 },
    }, { onProgress: (p) => events.push({ p, c: snap() }) });
    const trained = snap();
    // Steps: consecutive events of one epoch after the first; epochs: between epoch ends.
    const steps = [];
    const train = events.filter((e) => e.p.phase === 'train');
    for (let i = 1; i < train.length; i++) {
      const [a, b] = [train[i - 1], train[i]];
      if (a.p.epoch === b.p.epoch && b.p.epoch >= 1 && b.p.step > a.p.step && b.p.loss == null && a.p.loss == null) steps.push({ n: b.p.step - a.p.step, d: diff(a.c, b.c) });
    }
    const nSteps = steps.reduce((s, x) => s + x.n, 0);
    const stepTotal = steps.reduce((t, x) => Object.fromEntries(Object.keys(x.d).map((k) => [k, (t[k] ?? 0) + x.d[k]])), {});
    const ends = train.filter((e) => e.p.loss != null);
    const epochDiff = ends.length >= 2 ? diff(ends.at(-2).c, ends.at(-1).c) : null;
    const before = snap();
    const prediction = await sl.predictScnym(model, query, { normalize: true, batch_size: batch });
    const predicted = snap();
    const batches = Math.ceil(prediction.cells / batch);
    sl.close();
    return {
      backend: prediction.backend, adapter: sl.backend.adapter,
      stepsPerEpoch: train[0]?.p.steps_per_epoch, stepsMeasured: nSteps,
      perTrainingStep: nSteps ? per(stepTotal, nSteps) : null,
      perEpoch: epochDiff,
      training: diff(started, trained),
      perPredictionBatch: per(diff(before, predicted), batches),
      prediction: { ...diff(before, predicted), batches, cells: prediction.cells },
    };
  }, { spec, batch, epochs });
  const result = {
    what: 'WebGPU calls per scNym training step / epoch / prediction batch, headless Chromium (SwiftShader), engine in the page',
    date: new Date().toISOString(), spec, batch_size: batch, epochs, ...out,
    command: `node bench/gpu_dispatch_browser.mjs --cells ${spec.nCells} --genes ${spec.nGenes} --batch ${batch} --epochs ${epochs}`,
  };
  const file = join(root, 'bench', 'results', `${outName}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
  console.log(`wrote ${file}`);
  if (errors.length) console.log('page errors:', errors.map(String));
} finally {
  await browser.close();
  server.close();
}
