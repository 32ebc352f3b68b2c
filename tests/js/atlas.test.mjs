// Atlas packages (`sclabel atlas build`; tests/atlas_native.rs writes one to target/tmp/atlas/ from
// synthetic cells): opened in Node and in headless Chromium, instant annotation, the reference as a
// data set for training, damaged and newer-version packages refused, no request but the atlas's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'sclabel';
import { startServer } from '../../scripts/serve.mjs';
import { launchChromium, openHarness, root } from './helpers.mjs';

const ATLAS = join(root, 'target', 'tmp', 'atlas');
const SYNTHETIC = { nCells: 400, nGenes: 120, nClasses: 3, seed: 11 }; // the cells the atlas was built from
const missing = (t) => !existsSync(join(ATLAS, 'atlas.json')) && t.skip('target/tmp/atlas/ missing: run cargo test --features ndarray,cli first');

test('an atlas opens in Node: its model labels cells, its reference trains, damage and newer versions are refused', async (t) => {
  if (missing(t)) return;
  const sl = await open({ backend: 'cpu' });
  try {
    const { manifest, model, reference } = await sl.openAtlas(join(ATLAS, 'atlas.json'));
    assert.equal(manifest.id, 'synthetic-test');
    assert.equal(model.classes.length, 3);
    assert.equal(reference.nObs, 400);
    assert.equal(reference.format, 'atlas');
    const query = await sl.synthetic(SYNTHETIC);
    const p = await sl.predictScnym(model, query, { normalize: true });
    const truth = await sl.obs(query, 'cell_type');
    const accuracy = p.scNym.filter((l, i) => l === truth[i]).length / truth.length;
    assert.ok(accuracy > 0.9, `instant annotation accuracy ${accuracy}`);
    assert.equal(p.report.overlap.shared, 120);
    // The reference is a labelled data set like any other (ln(CPM+1) already: not re-normalised).
    const labels = await sl.obs(reference, 'cell_type');
    assert.equal(labels.filter((l) => l !== 'Unlabeled').length, 400);
    const trained = await sl.trainScnym(reference, query, { label_key: 'cell_type', query_normalize: true, config: { n_epochs: 2 } });
    assert.deepEqual(trained.classes, model.classes);
    // Only some of its genes: the kept columns, in the atlas's order.
    const some = [model.genes[7], model.genes[2], 'not_a_gene'];
    const kept = (await sl.openAtlas(join(ATLAS, 'atlas.json'), { genes: some })).reference;
    assert.deepEqual(await sl.varNames(kept), [model.genes[2], model.genes[7]]);
    assert.equal(kept.nObs, 400);
    // Fine-tuning from the atlas model (genes matched by name: tests/atlas_native.rs covers a query with fewer).
    const tuned = await sl.fineTuneAtlas({ manifest, model, reference }, await sl.synthetic({ ...SYNTHETIC, seed: 12 }), { normalize: true, config: { n_epochs: 2 } });
    assert.deepEqual(tuned.classes, model.classes);
    assert.deepEqual(tuned.genes, model.genes);
    assert.deepEqual(tuned.warnings, []);
    const tunedP = await sl.predictScnym(tuned, query, { normalize: true });
    const tunedAccuracy = tunedP.scNym.filter((l, i) => l === truth[i]).length / truth.length;
    assert.ok(tunedAccuracy > 0.9, `fine-tuned accuracy ${tunedAccuracy}`);
    await assert.rejects(sl.fineTuneAtlas({ manifest, model, reference: null }, query), (e) => e.code === 'invalid_option' && /reference/.test(e.message));
    // The options are the core's AtlasFineTuneOptions: a misspelt one is refused by name.
    await assert.rejects(sl.fineTuneAtlas({ manifest, model, reference }, query, { normalise: true }), (e) => e.code === 'invalid_option' && /normalise/.test(e.message));

    const dir = mkdtempSync(join(tmpdir(), 'sclabel-atlas-'));
    cpSync(ATLAS, dir, { recursive: true });
    const matrix = join(dir, manifest.files.matrix.path);
    const bytes = readFileSync(matrix);
    bytes[bytes.length >> 1] ^= 0xff;
    writeFileSync(matrix, bytes);
    await assert.rejects(sl.openAtlas(join(dir, 'atlas.json')), (e) => e.code === 'invalid_file' && /sha256/.test(e.message));
    writeFileSync(join(dir, 'atlas.json'), JSON.stringify({ ...manifest, format_version: 99 }));
    await assert.rejects(sl.openAtlas(join(dir, 'atlas.json')), (e) => e.code === 'unsupported_version' && /update sclabel/.test(e.message));
    writeFileSync(join(dir, 'atlas.json'), '{ not json');
    await assert.rejects(sl.openAtlas(join(dir, 'atlas.json')), (e) => e.code === 'invalid_file' && /not JSON/.test(e.message));
  } finally {
    sl.close();
  }
});

test('an atlas opens in Chromium from its URL (CPU): labels cells; only the atlas files are requested', async (t) => {
  if (missing(t)) return;
  const server = await startServer(0);
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await launchChromium({ webgpu: false });
  try {
    const { page, errors, requests } = await openHarness(browser, base);
    const out = await page.evaluate(async (synthetic) => {
      const { open } = await import('sclabel');
      const sl = await open({ backend: 'cpu' });
      const { model, reference } = await sl.openAtlas('/target/tmp/atlas/atlas.json');
      const query = await sl.synthetic(synthetic);
      const p = await sl.predictScnym(model, query, { normalize: true });
      const truth = await sl.obs(query, 'cell_type');
      const again = await sl.openAtlas('/target/tmp/atlas/atlas.json', { reference: false }); // from the cache
      sl.close();
      return { accuracy: p.scNym.filter((l, i) => l === truth[i]).length / truth.length, nObs: reference.nObs, again: again.reference };
    }, SYNTHETIC);
    assert.ok(out.accuracy > 0.9, `accuracy ${out.accuracy}`);
    assert.equal(out.nObs, 400);
    assert.equal(out.again, null);
    const atlasRequests = requests.filter((u) => u.includes('/target/tmp/atlas/'));
    assert.deepEqual([...new Set(atlasRequests.map((u) => u.split('/').pop()))].sort(), ['atlas.json', 'matrix.safetensors.zlib', 'model.safetensors']);
    assert.equal(atlasRequests.filter((u) => u.endsWith('model.safetensors')).length, 1, 'the second open reads the model from the cache');
    assert.ok(requests.every((u) => u.startsWith(base)), 'nothing but the page origin');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
  }
});

test('an atlas from a registry is fine-tuned on WebGPU in Chromium; the registry and its files are the only data requests', async (t) => {
  if (missing(t)) return;
  writeFileSync(join(ATLAS, 'registry.json'), JSON.stringify({ format: 'sclabel-registry', version: 1, atlases: [{ id: 'synthetic-test', version: '1', manifest: 'atlas.json' }] }));
  const server = await startServer(0);
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await launchChromium({ webgpu: true });
  try {
    const { page, errors, requests } = await openHarness(browser, base);
    const out = await page.evaluate(async (synthetic) => {
      const { open, loadRegistry } = await import('sclabel');
      const sl = await open({ backend: 'webgpu' });
      const registry = await loadRegistry('/target/tmp/atlas/registry.json');
      const atlas = await sl.openAtlas(registry.atlases[0]);
      const query = await sl.synthetic({ ...synthetic, nCells: 90, seed: 13 });
      const tuned = await sl.fineTuneAtlas(atlas, query, { normalize: true, config: { n_epochs: 1, batch_size: 64 } });
      const p = await sl.predictScnym(tuned, query, { normalize: true });
      const truth = await sl.obs(query, 'cell_type');
      sl.close();
      return { backend: p.backend.backend, accuracy: p.scNym.filter((l, i) => l === truth[i]).length / truth.length, source: registry.atlases[0].manifest };
    }, SYNTHETIC);
    assert.equal(out.backend, 'webgpu');
    assert.ok(out.accuracy > 0.9, `fine-tuned on WebGPU: accuracy ${out.accuracy}`);
    assert.equal(out.source, `${base}/target/tmp/atlas/atlas.json`, 'relative manifest resolved against the registry');
    const data = requests.filter((u) => !/\/(pkg|tests\/js)\//.test(new URL(u).pathname));
    assert.deepEqual([...new Set(data.map((u) => new URL(u).pathname))].sort(),
      ['/target/tmp/atlas/atlas.json', '/target/tmp/atlas/matrix.safetensors.zlib', '/target/tmp/atlas/model.safetensors', '/target/tmp/atlas/registry.json']);
    assert.ok(requests.every((u) => u.startsWith(base)), 'nothing but the page origin');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
  }
});
