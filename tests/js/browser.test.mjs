// The package in headless Chromium (Debian's, via playwright-core): WebGPU (SwiftShader) and the
// CPU backend, on synthetic and real cells (the demo page: demo.test.mjs). Pages come from
// 127.0.0.1 (a secure context, as WebGPU needs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { launchChromium, openHarness, root, sharedFile } from './helpers.mjs';

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

const harness = () => openHarness(browser, base);

/** Trains in the page and returns the report (plus whether WebGPU existed in the page). */
async function trainInPage(page, { backend, dataset, options }) {
  return page.evaluate(async ({ backend, dataset, options }) => {
    const { open } = await import('sclabel');
    const sl = await open({ backend });
    const data = dataset.url ? await sl.load(dataset.url) : await sl.synthetic(dataset);
    const events = [];
    const report = await sl.trainHoldout(data, options, { onProgress: (p) => events.push(p) });
    sl.close();
    return { report, events: events.length, hasGpu: !!navigator.gpu };
  }, { backend, dataset, options });
}

function assertLearned(report, minAccuracy) {
  const losses = report.history.map((e) => e.loss);
  assert.ok(losses.at(-1) < losses[0], `loss should go down: ${losses.join(', ')}`);
  assert.ok(report.test_accuracy >= minAccuracy, `accuracy ${report.test_accuracy} < ${minAccuracy}`);
  assert.ok(report.test_accuracy > report.majority_accuracy + 0.2, `accuracy ${report.test_accuracy} vs majority ${report.majority_accuracy}`);
}

test('WebGPU is really the backend when requested (synthetic cells)', async () => {
  const { page, errors } = await harness();
  const { report, hasGpu } = await trainInPage(page, {
    backend: 'webgpu',
    dataset: { nCells: 300, nGenes: 64, nClasses: 3, seed: 5 },
    options: { train: { n_epochs: 8, batch_size: 64, lr: 0.05, seed: 1 } },
  });
  assert.ok(hasGpu, 'navigator.gpu exists');
  assert.equal(report.backend.backend, 'webgpu');
  assert.equal(report.backend.requested, 'webgpu');
  assert.match(report.backend.adapter ?? '', /swiftshader|BrowserWebGpu/i);
  assertLearned(report, 0.8);
  assert.deepEqual(errors, []);
  await page.close();
});

const DEMO = join(root, 'www', 'data', 'pbmc68k_reduced.h5ad');
const REAL = { url: '/www/data/pbmc68k_reduced.h5ad' };
const REAL_OPTIONS = { label_key: 'bulk_labels', use_raw: true, train: { n_epochs: 15, lr: 0.01, seed: 0 } };

for (const backend of ['cpu', 'webgpu']) {
  test(`real cells on ${backend}: pbmc68k_reduced bulk_labels, held-out accuracy far above chance`, async (t) => {
    if (!existsSync(DEMO)) return t.skip('www/data/pbmc68k_reduced.h5ad missing: run scripts/setup.sh');
    const { page, errors } = await harness();
    const { report, events } = await trainInPage(page, { backend, dataset: REAL, options: REAL_OPTIONS });
    assert.equal(report.backend.backend, backend === 'cpu' ? 'flex' : 'webgpu');
    assertLearned(report, 0.6);
    assert.ok(events > 0);
    assert.deepEqual(errors, []);
    console.log(`# ${backend}: accuracy ${report.test_accuracy.toFixed(3)} (majority ${report.majority_accuracy.toFixed(3)}, chance ${(1 / report.class_names.length).toFixed(3)})`);
    await page.close();
  });
}

test('real cells from ../shared/data on CPU in the browser: Symphony, 9 types', async (t) => {
  if (!sharedFile('pbmc_symphony_3chemistries.h5ad', t)) return;
  const { page } = await harness();
  const { report } = await trainInPage(page, {
    backend: 'cpu',
    dataset: { url: '/shared-data/pbmc_symphony_3chemistries.h5ad' },
    options: { train: { n_epochs: 20, lr: 0.01, seed: 0 } },
  });
  assertLearned(report, 0.85);
  await page.close();
});

import { SYNTHETIC, TRANSFER, PREDICT, syntheticTransfer, nativeProbabilities, maxAbsDiff, scnymReference, importAndPredict, compareWithScnym } from './scnym_cases.mjs';

/** Runs one of scnym_cases.mjs's self-contained scenario functions inside the page. */
async function inPage(page, fn, backend, args) {
  return page.evaluate(async ([src, backend, args]) => {
    const scenario = (0, eval)(`(${src})`);
    return scenario(await import('sclabel'), backend, args);
  }, [fn.toString(), backend, args]);
}

for (const [backend, tolerance] of [['cpu', 1e-4], ['webgpu', 1e-3]]) {
  test(`scNym training in Chromium on ${backend} matches the native build`, async () => {
    const { page, errors } = await harness();
    const out = await inPage(page, syntheticTransfer, backend, { SYNTHETIC, TRANSFER, PREDICT });
    assert.equal(out.backend, backend === 'cpu' ? 'flex' : 'webgpu');
    assert.equal(out.mode, 'mixmatch+dan');
    // Training and prediction record the executor: the host kernels on the CPU, burn's on WebGPU.
    assert.deepEqual(out.executors, backend === 'cpu' ? ['host', 'host'] : ['burn', 'burn']);
    assert.ok(maxAbsDiff(out.reloaded, out.probabilities) < 1e-6, 'a bundle round trip predicts the same');
    const d = maxAbsDiff(out.probabilities, nativeProbabilities());
    console.log(`# scNym ${backend} in Chromium vs native: max |Δp| = ${d.toExponential(2)}`);
    assert.ok(d < tolerance, `max |Δp| ${d} ≥ ${tolerance}`);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test(`an imported scNym model reproduces scNym in Chromium on ${backend}`, async (t) => {
    const ref = scnymReference();
    if (!ref || !sharedFile('pbmc_symphony_3chemistries.h5ad', t)) return;
    const { page, errors } = await harness();
    const { probabilities, embedding, ...rest } = ref;
    const out = await inPage(page, importAndPredict, backend, { ...rest, h5ad: '/shared-data/pbmc_symphony_3chemistries.h5ad' });
    assert.equal(out.backend, backend === 'cpu' ? 'flex' : 'webgpu');
    const { maxP, maxE, cells } = compareWithScnym(ref, out);
    console.log(`# imported scNym in Chromium (${backend}): ${cells} cells, max |Δp| = ${maxP.toExponential(2)}, max rel |Δemb| = ${maxE.toExponential(2)}`);
    assert.equal(cells, 290);
    assert.ok(maxP < 1e-4 && maxE < 1e-3, `${maxP} ${maxE}`);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

import { AUDIT_DATA, AUDIT, syntheticAudit, compareAudit } from './audit_cases.mjs';

for (const [backend, tolerance] of [['cpu', 1e-4], ['webgpu', 1e-3]]) {
  test(`the annotation audit in Chromium on ${backend} matches the native build`, async () => {
    const { page, errors } = await harness();
    const out = await inPage(page, syntheticAudit, backend, { AUDIT_DATA, AUDIT });
    assert.equal(out.backend, backend === 'cpu' ? 'flex' : 'webgpu');
    const { dc, dv } = compareAudit(out, tolerance);
    console.log(`# audit in Chromium (${backend}) vs native: max |Δconf| = ${dc.toExponential(2)}, |Δvar| = ${dv.toExponential(2)}`);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('an .h5ad File is predicted in the worker block by block, as the loaded data set is', async () => {
  const file = join(root, 'target', 'tmp', 'streaming_reference.h5ad');
  assert.ok(existsSync(file), `${file} is written by \`cargo test\` (tests/h5ad_streaming.rs); run it first`);
  const { page, errors } = await harness();
  const out = await page.evaluate(async () => {
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    const url = '/target/tmp/streaming_reference.h5ad';
    const data = await sl.load(url);
    const model = await sl.trainScnym(data, null, { preset: 'no_new_identity', normalize: true, config: { n_epochs: 2, seed: 0 } });
    // A File, as a user's drop gives: read in the worker with FileReaderSync, a slice at a time.
    const blob = await (await fetch(url)).blob();
    const events = [];
    const streamed = await sl.predictScnym(model, new File([blob], 'reference.h5ad'), { normalize: true }, { onProgress: (p) => events.push(p.cells_done) });
    const loaded = await sl.predictScnym(model, data, { normalize: true });
    const kept = await sl.load(new File([blob], 'reference.h5ad'), { genes: model.genes.slice(0, 500) });
    sl.close();
    const maxDiff = streamed.scNym_probabilities.reduce((m, v, i) => Math.max(m, Math.abs(v - loaded.scNym_probabilities[i])), 0);
    return { same: streamed.scNym.every((l, i) => l === loaded.scNym[i]), maxDiff, n: streamed.cells, names: streamed.obsNames?.length, last: events.at(-1), keptGenes: kept.nVars, keptCells: kept.nObs };
  });
  assert.ok(out.same, 'labels equal');
  assert.ok(out.maxDiff < 1e-6, `probabilities differ by ${out.maxDiff}`);
  assert.equal(out.n, 3000);
  assert.equal(out.names, 3000);
  assert.equal(out.last, 3000, 'the last progress event counts every cell');
  assert.deepEqual([out.keptCells, out.keptGenes], [3000, 500]);
  assert.deepEqual(errors, []);
  await page.close();
});
