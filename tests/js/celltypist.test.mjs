// CellTypist's models through the package, in Node and in headless Chromium: the fixture models
// (tests/fixtures/celltypist: LogisticRegression and SGDClassifier, pickled under numpy 2 and 1)
// give CellTypist's own predictions (probabilities within 1e-5, labels identical); a hostile
// pickle is refused by name; the sclabel bundle of a model predicts the same; a file read by
// blocks predicts as the loaded one; a models index
// lists models and a model fetched from it comes from the Cache API the second time; majority
// voting within CellTypist's own clusters gives CellTypist's vote.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { open, loadCelltypistIndex } from 'sclabel';
import { startServer } from '../../scripts/serve.mjs';
import { launchChromium, openHarness, root } from './helpers.mjs';

const fixtures = join(root, 'tests', 'fixtures', 'celltypist');
const MODELS = ['pbmc3k_lr', 'pbmc3k_lr_np1', 'pbmc3k_sgd_nomean', 'pbmc3k_sgd_nomean_np1'];
const COUNTS = join(root, 'www', 'data', 'pbmc3k_counts.h5ad');

/** CellTypist's own annotate() of the first 300 cells (scripts/make-celltypist-fixtures.py). */
function expected(name) {
  const [header, ...lines] = readFileSync(join(fixtures, `${name}.expected.csv`), 'utf8').trim().split('\n');
  const classes = header.split(',').slice(4).map((h) => h.replace(/^p:/, ''));
  const rows = lines.map((l) => l.split(','));
  return { classes, cells: rows.map((r) => r[0]), best: rows.map((r) => r[1]), probMatch: rows.map((r) => r[2]), probs: rows.map((r) => r.slice(4).map(Number)) };
}

/** A prediction (plain arrays) against CellTypist's. */
function assertCelltypist(name, p, obsNames) {
  const want = expected(name);
  assert.deepEqual(p.classes, want.classes, name);
  assert.deepEqual(obsNames, want.cells, name);
  assert.deepEqual(p.predicted_labels, want.best, `${name}: best match`);
  assert.deepEqual(p.prob_match, want.probMatch, `${name}: prob match`);
  assert.deepEqual(p.labels, want.best, `${name}: sclabel's labels are the best match without voting`);
  let worst = 0;
  const k = want.classes.length;
  want.probs.forEach((row, i) => row.forEach((v, c) => { worst = Math.max(worst, Math.abs(p.probability_matrix[i * k + c] - v)); }));
  want.probs.forEach((row, i) => { worst = Math.max(worst, Math.abs(p.conf_score[i] - Math.max(...row))); });
  assert.ok(worst < 1e-5, `${name}: largest probability difference from CellTypist ${worst}`);
  assert.equal(p.genesUsed, 300);
}

const first300 = Array.from({ length: 300 }, (_, i) => i);

test('Node: the four fixture models give CellTypist\'s predictions; the bundle predicts the same; a hostile pickle is refused', async () => {
  const sl = await open({ backend: 'cpu' });
  try {
    const data = await sl.subset(await sl.load(COUNTS), first300);
    const obsNames = await sl.obsNames(data);
    for (const name of MODELS) {
      const model = await sl.loadCelltypist(join(fixtures, `${name}.pkl`));
      assert.equal(model.kind, 'celltypist');
      assert.equal(model.info.classifier, name.includes('sgd') ? 'SGDClassifier' : 'LogisticRegression');
      const p = await sl.predictCelltypist(model, data);
      assertCelltypist(name, p, obsNames);
      assert.deepEqual(p.report.warnings, []);
      // The safetensors bundle: no pickle, same predictions.
      const again = await sl.predictCelltypist(await sl.loadCelltypist(await sl.saveCelltypist(model)), data);
      assert.deepEqual(Array.from(again.probability_matrix), Array.from(p.probability_matrix), name);
    }
    // A pickle calling os.system: refused by name before anything runs.
    const hostile = Buffer.concat([Buffer.from([0x80, 0x04]), Buffer.from('cposix\nsystem\n'), Buffer.from([0x8c, 0x02]), Buffer.from('id'), Buffer.from([0x85, 0x52, 0x2e])]);
    await assert.rejects(sl.loadCelltypist(new Uint8Array(hostile)), (e) => e.code === 'invalid_file' && /posix\.system/.test(e.message));
    // A truncated file names the problem.
    const good = readFileSync(join(fixtures, 'pbmc3k_lr.pkl'));
    await assert.rejects(sl.loadCelltypist(new Uint8Array(good.subarray(0, good.length >> 1))), (e) => e.code === 'invalid_file');
    // Few shared genes are named, not silently scored.
    const model = await sl.loadCelltypist(join(fixtures, 'pbmc3k_lr.pkl'));
    const genes = (await sl.varNames(data)).filter((g) => !model.genes.slice(0, 200).includes(g));
    const few = await sl.load(COUNTS, { genes });
    const p = await sl.predictCelltypist(model, few);
    assert.equal(p.genesUsed, 100);
    assert.match(p.report.warnings.join('\n'), /only 100 of the model's 300 genes/);
    // A model is not a data set, and the other way round.
    await assert.rejects(sl.predictCelltypist(data, model), (e) => e.code === 'invalid_option');
  } finally {
    sl.close();
  }
});

test('Node: majority voting within CellTypist\'s own clusters gives CellTypist\'s vote for all 2,700 cells', async () => {
  const sl = await open({ backend: 'cpu' });
  try {
    const [header, ...lines] = readFileSync(join(fixtures, 'pbmc3k_lr.majority.csv'), 'utf8').trim().split('\n');
    assert.equal(header, 'cell,predicted_labels,over_clustering,majority_voting');
    const rows = lines.map((l) => l.split(','));
    const data = await sl.withObs(await sl.load(COUNTS), 'ct_clusters', rows.map((r) => r[2]));
    const model = await sl.loadCelltypist(join(fixtures, 'pbmc3k_lr.pkl'));
    const p = await sl.predictCelltypist(model, data, { majority_voting: true, over_clustering: 'ct_clusters' });
    assert.deepEqual(p.predicted_labels, rows.map((r) => r[1]));
    assert.deepEqual(p.majority_voting, rows.map((r) => r[3]));
    assert.deepEqual(p.labels, p.majority_voting);
    await assert.rejects(sl.predictCelltypist(model, data, { majority_voting: true, over_clustering: 'no_such_column' }), (e) => /no_such_column/.test(e.message));
    // sclabel's own over-clustering, in wasm: the native build's clusters (tests/celltypist_native.rs
    // compares them with CellTypist's).
    const own = await sl.predictCelltypist(model, data, { majority_voting: true });
    assert.match(own.clustering, /^\d+ clusters: Leiden \(modularity, resolution 5, 2 iterations\)/);
    assert.equal(own.over_clustering.length, 2700);
    const agree = own.majority_voting.filter((l, i) => l === rows[i][3]).length / 2700;
    assert.ok(agree > 0.75, `voted labels identical to CellTypist's for ${agree}`);
  } finally {
    sl.close();
  }
});

test('Node: an .h5ad predicted by blocks, never loaded, equals the loaded prediction; voting there needs a cluster column', async () => {
  const sl = await open({ backend: 'cpu' });
  try {
    const model = await sl.loadCelltypist(join(fixtures, 'pbmc3k_lr.pkl'));
    const loaded = await sl.predictCelltypist(model, await sl.load(COUNTS));
    const events = [];
    const streamed = await sl.predictCelltypist(model, COUNTS, {}, { onProgress: (p) => events.push(p) });
    assert.deepEqual(streamed.predicted_labels, loaded.predicted_labels);
    assert.deepEqual(Array.from(streamed.probability_matrix), Array.from(loaded.probability_matrix));
    assert.equal(streamed.obsNames.length, 2700);
    assert.ok(events.length > 0 && events.at(-1).cells_done === 2700);
    await assert.rejects(sl.predictCelltypist(model, COUNTS, { majority_voting: true }), (e) => e.code === 'invalid_option' && /load the file first/.test(e.message));
  } finally {
    sl.close();
  }
});

test('loadCelltypistIndex: entries resolve against the index, malformed indexes are refused', async () => {
  const index = await loadCelltypistIndex({ models: [{ filename: 'a.pkl', url: 'https://example.org/models/a.pkl', version: 'v1' }] });
  assert.equal(index.models[0].url, 'https://example.org/models/a.pkl');
  await assert.rejects(loadCelltypistIndex({ models: [{ url: 'x' }] }), (e) => e.code === 'invalid_file' && /filename/.test(e.message));
  await assert.rejects(loadCelltypistIndex({ nope: [] }), (e) => e.code === 'invalid_file');
});

let server, base, browser;
before(async () => {
  server = await startServer(0);
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await launchChromium({ webgpu: false });
});
after(async () => {
  await browser?.close();
  server?.close();
});

test('Chromium: models from a models index give CellTypist\'s predictions, and come from the cache the second time', async () => {
  const { page, errors, requests } = await openHarness(browser, base);
  // The index as CellTypist publishes it, relative URLs to the fixture pickles (served here).
  const index = { description: 'fixtures', last_update: '2026-12-05', models: MODELS.map((m) => ({ filename: `${m}.pkl`, url: `${m}.pkl`, version: 'v1', No_celltypes: 10, default: m === 'pbmc3k_lr' })) };
  await page.route('**/celltypist-index/models.json', (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify(index) }));
  await page.route('**/celltypist-index/*.pkl', (route) => route.fulfill({ body: readFileSync(join(fixtures, new URL(route.request().url()).pathname.split('/').pop())) }));
  const out = await page.evaluate(async () => {
    const { open, loadCelltypistIndex } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    const index = await loadCelltypistIndex('/celltypist-index/models.json');
    const data = await sl.subset(await sl.load('/www/data/pbmc3k_counts.h5ad'), Array.from({ length: 300 }, (_, i) => i));
    const obsNames = await sl.obsNames(data);
    const results = {};
    for (const entry of index.models) {
      const model = await sl.loadCelltypist(entry);
      const p = await sl.predictCelltypist(model, data);
      results[entry.filename.replace('.pkl', '')] = { ...p, conf_score: Array.from(p.conf_score), probability_matrix: Array.from(p.probability_matrix) };
    }
    const cached = (await (await caches.open('sclabel-models')).keys()).length;
    // Again: from the Cache API, not the network.
    await sl.loadCelltypist(index.models[0]);
    sl.close();
    return { results, obsNames, cached, urls: index.models.map((m) => m.url) };
  });
  for (const name of MODELS) assertCelltypist(name, out.results[name], out.obsNames);
  assert.equal(out.cached, 4);
  assert.ok(out.urls.every((u) => u.startsWith(`${base}/celltypist-index/`)), out.urls.join(' '));
  assert.equal(requests.filter((u) => u.endsWith('pbmc3k_lr.pkl')).length, 1, 'the second load of a model comes from the cache');
  assert.ok(requests.every((u) => u.startsWith(base)), 'no request leaves the page\'s origin');
  assert.deepEqual(errors, []);
  await page.close();
});
