// A lost WebGPU device (Chromium's GPUDevice.destroy(), on SwiftShader) in the middle of scNym
// training: the call fails with `device_lost` at once (no hang), the client carries on on the CPU
// with its data sets (`sl.backend` says why), a model from the lost device is refused by name, and
// the same training then runs on the CPU without reopening anything or reloading the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../../scripts/serve.mjs';
import { launchChromium, openHarness } from './helpers.mjs';

let server, base, browser;
before(async () => {
  server = await startServer(0);
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await launchChromium({ webgpu: true });
});
after(async () => {
  await browser?.close();
  server?.close();
});

test('a GPU device destroyed mid-training: device_lost, then the same client trains on the CPU', async () => {
  const { page, errors } = await openHarness(browser, base);
  const out = await page.evaluate(async () => {
    // The engine runs in the page (worker: false), so the test can reach the device wgpu asked for.
    const devices = [];
    const requestDevice = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function (...args) { const d = await requestDevice.apply(this, args); devices.push(d); return d; };
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'webgpu', worker: false });
    const before = sl.backend.backend;
    const data = await sl.synthetic({ nCells: 1200, nGenes: 120, nClasses: 4, seed: 2 });
    const early = await sl.trainScnym(data, null, { label_key: 'cell_type', normalize: true, config: { n_epochs: 1, seed: 1 } });
    let destroyed = false;
    const options = { label_key: 'cell_type', normalize: true, config: { n_epochs: 3, seed: 1 } };
    const lost = await sl.trainScnym(data, null, options, {
      onProgress: (p) => { if (!destroyed && p.step >= 1) { destroyed = true; devices.forEach((d) => d.destroy()); } },
    }).then(() => null, (e) => ({ code: e.code, message: e.message }));
    const after = sl.backend;
    const oldModel = await sl.predictScnym(early, data).then(() => null, (e) => ({ code: e.code, message: e.message }));
    const model = await sl.trainScnym(data, null, options);
    const p = await sl.predictScnym(model, data, { normalize: true });
    sl.close();
    return { before, lost, after, oldModel, accuracy: p.scNym.filter((l, i) => l === `type_${i % 4}`).length / p.cells, predictedOn: p.backend.backend };
  });
  assert.equal(out.before, 'webgpu');
  assert.equal(out.lost?.code, 'device_lost', JSON.stringify(out.lost));
  assert.match(out.lost.message, /GPU device was lost during trainScnym \(.*destroyed.*\)\. sclabel carries on on the CPU/i);
  assert.equal(out.after.backend, 'flex');
  assert.match(out.after.reason, /GPU device was lost/);
  assert.equal(out.oldModel?.code, 'device_lost');
  assert.match(out.oldModel.message, /model #\d+ was on the GPU device that was lost/);
  assert.equal(out.predictedOn, 'flex');
  assert.ok(out.accuracy > 0.9, `accuracy after carrying on on the CPU: ${out.accuracy}`);
  assert.deepEqual(errors, []);
  await page.close();
});
