// The npm package as a web app uses it, in headless Chromium: the engine in a Web Worker, progress
// while the page keeps drawing, cancelling and starting again, CPU fallback with WebGPU switched
// off, reading users' files on demand from a File, exporting into their .h5ad, the Symphony
// transfer against the native build, and no request leaving the page but the package's own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { launchChromium, openHarness, artifacts, root, sharedFile } from './helpers.mjs';
import { open } from 'sclabel';

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

/** A harness page (on another browser when given): errors and every request recorded. */
const harness = (b = browser) => openHarness(b, base);

for (const backend of ['cpu', 'webgpu']) {
  test(`worker on ${backend}: the page keeps drawing while scNym trains, progress arrives, abort stops it within a step, and it trains again`, async () => {
    const { page, errors } = await harness();
    const out = await page.evaluate(async (backend) => {
      const { open } = await import('sclabel');
      const sl = await open({ backend });
      const data = await sl.synthetic({ nCells: 1500, nGenes: 200, nClasses: 4, seed: 2 });
      // Frames the page draws during training, and the longest gap between two of them.
      let frames = 0, last = performance.now(), maxGap = 0, ticking = true;
      const tick = (t) => { frames++; maxGap = Math.max(maxGap, t - last); last = t; if (ticking) requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
      const controller = new AbortController();
      const events = [];
      let abortedAt = null, stepsAfterAbort = 0;
      const abortEpoch = backend === 'cpu' ? 8 : 1;
      const options = { label_key: 'cell_type', normalize: true, config: { n_epochs: 200, batch_size: 64, seed: 3 } };
      let error = null;
      try {
        await sl.trainScnym(data, null, options, {
          signal: controller.signal,
          onProgress: (p) => {
            events.push(p);
            if (abortedAt !== null) stepsAfterAbort++;
            // On the CPU one epoch of these cells is now so short that 8–12 frames were drawn by
            // epoch 1: abort later there, to count frames over a window long enough to mean something.
            else if (p.phase === 'train' && p.epoch >= abortEpoch) { abortedAt = performance.now(); controller.abort(); }
          },
        });
      } catch (e) {
        error = { code: e.code, message: e.message };
      }
      const stopMs = performance.now() - abortedAt;
      ticking = false;
      const again = await sl.trainScnym(data, null, { ...options, config: { ...options.config, n_epochs: 2 } });
      const p = await sl.predictScnym(again, data, { normalize: true });
      sl.close();
      return { error, stopMs, stepsAfterAbort, frames, maxGap, events: events.length, withLoss: events.filter((e) => e.loss !== null).length, cells: p.cells, backend: sl.backend.backend };
    }, backend);
    console.log(`# ${backend}: ${out.events} progress events, ${out.frames} frames drawn (longest gap ${out.maxGap.toFixed(0)} ms), abort took ${out.stopMs.toFixed(0)} ms and ${out.stepsAfterAbort} more events`);
    assert.equal(out.backend, backend === 'cpu' ? 'flex' : 'webgpu');
    assert.equal(out.error?.code, 'cancelled', JSON.stringify(out.error));
    assert.ok(out.withLoss >= 1, 'epoch-end events carry the loss');
    assert.ok(out.frames >= 10, `only ${out.frames} frames while training`);
    assert.ok(out.maxGap < 1000, `the page froze for ${out.maxGap} ms`);
    // The worker checks the signal at every reported step, but the page's abort message reaches it
    // only while it yields there: an event can already be on its way, and when the page is busy
    // (drawing) the next report can go out before the message arrives — seen with 2 once training
    // got faster (epoch ends, always reported, came closer together). So: at most two more events,
    // and a prompt stop.
    assert.ok(out.stepsAfterAbort <= 2, `${out.stepsAfterAbort} events after abort`);
    assert.ok(out.stopMs < 1000, `abort took ${out.stopMs} ms`);
    assert.equal(out.cells, 1500);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('with WebGPU switched off, auto falls back to the CPU and says why; webgpu is a clear error', async () => {
  const noGpu = await launchChromium({ webgpu: false });
  try {
    const { page, errors } = await harness(noGpu);
    const out = await page.evaluate(async () => {
      const { open } = await import('sclabel');
      const auto = await open({ backend: 'auto' });
      const data = await auto.synthetic({ nCells: 200, nGenes: 50, nClasses: 2, seed: 1 });
      const report = await auto.trainHoldout(data, { train: { n_epochs: 2, seed: 1 } });
      auto.close();
      let error = null;
      try { await open({ backend: 'webgpu' }); } catch (e) { error = { code: e.code, message: e.message }; }
      return { backend: auto.backend, reportBackend: report.backend, error };
    });
    assert.equal(out.backend.backend, 'flex');
    assert.match(out.backend.reason, /fell back to CPU because/);
    assert.equal(out.reportBackend.backend, 'flex');
    assert.equal(out.error?.code, 'backend', JSON.stringify(out.error));
    assert.match(out.error.message, /webgpu/i);
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    await noGpu.close();
  }
});

const FILES = ['pbmc3k_raw_labeled.h5ad', 'pbmc_symphony_3chemistries.h5ad', 'pbmc8k_200hvg.h5ad', 'pbmc68k_reduced.h5ad', 'pancreas_xin.h5ad', 'pancreas_wang.h5ad'];

test('every ../shared/data file loads from a File in the worker (read on demand) exactly as Node reads it', async (t) => {
  const present = FILES.filter((f) => sharedFile(f, t));
  if (present.length === 0) return;
  const node = await open({ backend: 'cpu' });
  const expected = {};
  for (const f of present) expected[f] = (await node.load(join(root, '..', 'shared', 'data', f))).summary;
  node.close();
  const { page, errors } = await harness();
  const got = await page.evaluate(async (files) => {
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    const out = {};
    for (const f of files) {
      const blob = await (await fetch(`/shared-data/${f}`)).blob();
      out[f] = (await sl.load(new File([blob], f))).summary;
    }
    sl.close();
    return out;
  }, present);
  for (const f of present) assert.deepEqual(got[f], expected[f], f);
  assert.deepEqual(errors, []);
  await page.close();
});

test('symphony-loco 3pv1 in the browser (worker, CPU): accuracy within 0.02 of the native build, same seed and config', async (t) => {
  if (!sharedFile('pbmc_symphony_3chemistries.h5ad', t)) return;
  const nativeFile = join(root, 'target', 'tmp', 'native_symphony_3pv1.json');
  assert.ok(existsSync(nativeFile), `${nativeFile} is written by \`cargo test\` (tests/scnym_native.rs); run it first`);
  const native = JSON.parse(readFileSync(nativeFile, 'utf8'));
  const { page, errors } = await harness();
  const out = await page.evaluate(async () => {
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    const all = await sl.load('/shared-data/pbmc_symphony_3chemistries.h5ad');
    const donor = await sl.obs(all, 'donor');
    const rows = (keep) => donor.flatMap((d, i) => ((d === '3pv1') === keep ? [i] : []));
    const reference = await sl.subset(all, rows(false));
    const query = await sl.subset(all, rows(true));
    // As tests/scnym_native.rs `symphony_two_chemistries_label_the_third`.
    const model = await sl.trainScnym(reference, query, { label_key: 'cell_type', domain_key: 'donor', preset: 'no_new_identity', normalize: true });
    const p = await sl.predictScnym(model, query, { normalize: true });
    const truth = await sl.obs(query, 'cell_type');
    const hits = p.scNym.filter((l, i) => l === truth[i]).length;
    sl.close();
    return { accuracy: hits / truth.length, cells: truth.length };
  });
  console.log(`# symphony 3pv1: browser accuracy ${out.accuracy.toFixed(4)}, native ${native.accuracy.toFixed(4)} (${out.cells} cells)`);
  assert.equal(out.cells, native.cells);
  assert.ok(Math.abs(out.accuracy - native.accuracy) <= 0.02, `browser ${out.accuracy} vs native ${native.accuracy}`);
  assert.deepEqual(errors, []);
  await page.close();
});

test('privacy: a whole analysis requests nothing but the package and the data the host gave it', async (t) => {
  if (!sharedFile('pancreas_wang.h5ad', t)) return;
  const { page, errors, requests } = await harness();
  await page.evaluate(async () => {
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'auto' });
    const data = await sl.load('/shared-data/pancreas_wang.h5ad');
    const model = await sl.trainScnym(data, null, { label_key: 'cell_type', normalize: true, config: { n_epochs: 2, seed: 1 } });
    const p = await sl.predictScnym(model, data, { normalize: true });
    await sl.audit(data, { label_key: 'cell_type', train: { n_epochs: 3, seed: 1 } });
    await sl.exportH5ad(data, { obs: { scNym: { categorical: p.scNym } } });
    sl.close();
  });
  const allowed = (u) => {
    const url = new URL(u);
    return url.origin === base && (url.pathname.startsWith('/pkg/') || url.pathname === '/tests/js/harness.html' || url.pathname === '/shared-data/pancreas_wang.h5ad');
  };
  const other = requests.filter((u) => !allowed(u));
  assert.deepEqual(other, [], `unexpected requests: ${other.join(', ')}`);
  assert.ok(requests.some((u) => u.endsWith('/pkg/worker.js')), 'the worker script was loaded');
  assert.deepEqual(errors, []);
  await page.close();
});

test('exportH5ad writes predictions into the user\'s file, which reads back with them; CSV export', async (t) => {
  if (!sharedFile('pancreas_xin.h5ad', t) || !sharedFile('pancreas_wang.h5ad', t)) return;
  const { page, errors } = await harness();
  const out = await page.evaluate(async () => {
    const { open, predictionAdditions, toCsv } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    const reference = await sl.load('/shared-data/pancreas_xin.h5ad');
    const blob = await (await fetch('/shared-data/pancreas_wang.h5ad')).blob();
    const query = await sl.load(new File([blob], 'pancreas_wang.h5ad'));
    const model = await sl.trainScnym(reference, query, { label_key: 'cell_type', preset: 'new_identity_discovery', normalize: true, config: { n_epochs: 3, seed: 2 } });
    const p = await sl.predictScnym(model, query, { normalize: true });
    const annotated = await sl.exportH5ad(query, predictionAdditions(p));
    // Appended: the file's own bytes after its superblock are all there, unchanged.
    const kept = new Uint8Array(await annotated.slice(128, blob.size).arrayBuffer());
    const source = new Uint8Array(await blob.slice(128).arrayBuffer());
    const bytesKept = kept.length === source.length && kept.every((b, i) => b === source[i]);
    const again = await sl.load(annotated, { name: 'annotated.h5ad' });
    const labels = await sl.obs(again, 'scNym');
    const original = await sl.obs(again, 'cell_type');
    const csv = toCsv({ scNym: p.scNym, scNym_confidence: p.scNym_confidence }, await sl.obsNames(query));
    sl.close();
    return {
      isBlob: annotated instanceof Blob, size: annotated.size, original: blob.size, embeddingBytes: p.X_scnym.byteLength, bytesKept, labelsMatch: labels.every((l, i) => l === p.scNym[i]),
      cellTypeKept: original.length === 501, columns: again.summary.obs.map((c) => c.name), nObs: again.nObs, nVars: again.nVars,
      csvLines: csv.trim().split('\n').length, csvHeader: csv.split('\n')[0],
    };
  });
  assert.ok(out.isBlob && out.bytesKept, 'a Blob of the file as it was, the additions appended');
  // The tail is the embedding (501 × its width, f32), the columns and metadata.
  const grown = out.size - out.original - out.embeddingBytes;
  assert.ok(grown > 0 && grown < 64 << 10, `${out.original} → ${out.size} bytes (embedding ${out.embeddingBytes})`);
  assert.ok(out.labelsMatch, 'obs/scNym reads back as predicted');
  assert.ok(out.cellTypeKept);
  assert.deepEqual([out.nObs, out.nVars], [501, 219]);
  assert.ok(out.columns.includes('scNym') && out.columns.includes('scNym_confidence'), out.columns.join(','));
  assert.equal(out.csvLines, 502);
  assert.equal(out.csvHeader, 'cell,scNym,scNym_confidence');
  assert.deepEqual(errors, []);
  await page.close();
});

test('trainScnym from Files in the worker (read on demand) gives the model training on them loaded gives', async (t) => {
  if (!sharedFile('pancreas_xin.h5ad', t) || !sharedFile('pancreas_wang.h5ad', t)) return;
  const { page, errors } = await harness();
  const out = await page.evaluate(async () => {
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    const file = async (name) => new File([await (await fetch(`/shared-data/${name}`)).blob()], name);
    const [reference, query] = [await file('pancreas_xin.h5ad'), await file('pancreas_wang.h5ad')];
    const options = { label_key: 'cell_type', normalize: true, max_query_cells: 300, config: { n_epochs: 2, seed: 4 } };
    const fromFiles = await sl.trainScnym(reference, query, options);
    const fromLoaded = await sl.trainScnym(await sl.load(reference), await sl.load(query), options);
    const [a, b] = [await sl.predictScnym(fromFiles, query, { normalize: true }), await sl.predictScnym(fromLoaded, query, { normalize: true })];
    sl.close();
    return {
      genes: fromFiles.genes.length === fromLoaded.genes.length && fromFiles.genes.every((g, i) => g === fromLoaded.genes[i]),
      warnings: [fromFiles.warnings, fromLoaded.warnings],
      same: a.scNym_probabilities.every((v, i) => v === b.scNym_probabilities[i]), cells: a.cells,
    };
  });
  assert.ok(out.genes, 'the same genes');
  assert.deepEqual(out.warnings[0], out.warnings[1]);
  assert.match(out.warnings[0].join(' '), /subsampled to 300/);
  assert.ok(out.same && out.cells === 501, 'the same probabilities for every query cell');
  assert.deepEqual(errors, []);
  await page.close();
});

test('model bundles: save → load, an atlas registry with Cache API caching per version, format and sha256 checks', async () => {
  // A small trained bundle, made in Node and served like a host's atlas file.
  const node = await open({ backend: 'cpu' });
  const data = await node.synthetic({ nCells: 300, nGenes: 60, nClasses: 3, seed: 4 });
  const model = await node.trainScnym(data, null, { label_key: 'cell_type', normalize: true, config: { n_epochs: 2, seed: 1 } });
  const bytes = await node.saveModel(model);
  const reloaded = await node.loadModel(bytes);
  assert.deepEqual(reloaded.classes, model.classes);
  node.close();
  writeFileSync(join(artifacts, 'tiny-atlas.safetensors'), bytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  const { page, errors, requests } = await harness();
  const out = await page.evaluate(async (sha256) => {
    const { open, loadRegistry } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    const registry = await loadRegistry({
      format: 'sclabel-registry', version: 1,
      atlases: [{ id: 'tiny', name: 'Tiny test atlas', url: '/tests/artifacts/tiny-atlas.safetensors', version: '1', bundle_format_version: 1, sha256 }],
    });
    const entry = registry.atlases[0];
    const first = await sl.loadAtlas(entry);
    const second = await sl.loadAtlas(entry);                       // from the Cache API
    const third = await sl.loadAtlas({ ...entry, version: '2' });   // a new version: fetched, the old one dropped
    const cached = (await (await caches.open('sclabel-models')).keys()).map((r) => r.url);
    const fail = async (e) => { try { await sl.loadAtlas(e); return null; } catch (err) { return err.code; } };
    const newer = await fail({ ...entry, bundle_format_version: 99 });
    const corrupt = await fail({ ...entry, version: '3', sha256: '0'.repeat(64) });
    sl.close();
    return { classes: [first.classes, second.classes, third.classes], cached, newer, corrupt };
  }, sha256);
  assert.deepEqual(out.classes[0], out.classes[1]);
  assert.deepEqual(out.classes[0], out.classes[2]);
  assert.equal(out.cached.length, 1, out.cached.join(', '));
  assert.match(out.cached[0], /sclabel-cache=tiny%402/);
  assert.equal(out.newer, 'unsupported_version');
  assert.equal(out.corrupt, 'invalid_file');
  const fetched = requests.filter((u) => u.includes('tiny-atlas.safetensors')).length;
  assert.equal(fetched, 3, 'versions 1, 2 and 3 fetched once each; the second load of version 1 came from the cache');
  assert.deepEqual(errors, []);
  await page.close();
});

test('the CPU-only module is what a CPU client downloads; WebGPU gets the full one', async () => {
  const { statSync } = await import('node:fs');
  const size = (name) => statSync(join(root, 'pkg', name)).size;
  // The CPU module leaves burn's GPU stack out: well under the full module's size.
  assert.ok(size('sclabel_wasm_cpu_bg.wasm') < 0.5 * size('sclabel_wasm_bg.wasm'), `${size('sclabel_wasm_cpu_bg.wasm')} vs ${size('sclabel_wasm_bg.wasm')} bytes`);
  for (const [backend, want, not] of [['cpu', 'sclabel_wasm_cpu_bg.wasm', 'sclabel_wasm_bg.wasm'], ['webgpu', 'sclabel_wasm_bg.wasm', 'sclabel_wasm_cpu_bg.wasm']]) {
    const { page, errors, requests } = await harness();
    const info = await page.evaluate(async (b) => {
      const { open } = await import('sclabel');
      const sl = await open({ backend: b });
      const data = await sl.synthetic({ nCells: 60, nGenes: 20, nClasses: 2, seed: 1 });
      const report = await sl.trainHoldout(data, { train: { n_epochs: 1 } });
      sl.close();
      return { backend: sl.backend.backend, accuracy: report.test_accuracy };
    }, backend);
    assert.equal(info.backend, backend === 'cpu' ? 'flex' : 'webgpu');
    assert.ok(requests.some((u) => u.endsWith(`/pkg/${want}`)), `${backend}: ${want} not requested (${requests.filter((u) => u.includes('.wasm')).join(', ')})`);
    assert.ok(!requests.some((u) => u.endsWith(`/pkg/${not}`)), `${backend}: ${not} requested too`);
    assert.deepEqual(errors, []);
    await page.close();
  }
});
