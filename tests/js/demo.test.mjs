// The demo viewer (www/) end to end in headless Chromium, used as a person would: the ready demo on
// WebGPU (SwiftShader), then the user's own files (an .h5ad reference and an AnnData-Zarr folder
// query with labels) with WebGPU switched off. Views must draw real content (elements counted,
// exported pixels checked), downloads must re-open. Screenshots go to tests/artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { launchChromium, artifacts, root } from './helpers.mjs';

const REFERENCE = join(root, 'www', 'data', 'pbmc68k_reduced.h5ad');
const QUERY = join(root, 'www', 'data', 'pbmc3k_counts.h5ad');
const ZARR_QUERY = join(root, 'tests', 'fixtures', 'zarr', 'pbmc68k_reduced.v3.zarr');
// A bound on waiting, not a speed check: the WebGPU run takes ~280 s on SwiftShader here and once
// took over 480 s in a slow phase of a 2-core VM.
const RUN_TIMEOUT = 900_000;

let server, base;
before(async () => {
  server = await startServer(0);
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => server?.close());

async function openDemo(browser, search = '') {
  const page = await browser.context.newPage();
  const errors = [], requests = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource.*404/.test(m.text())) errors.push(m.text()); });
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`${base}/www/${search}`);
  return { page, errors, requests };
}

/** Short runs: SwiftShader and the wasm CPU path are slow, and the views are what is tested here. */
async function configure(page, { epochs, auditEpochs, auditBatch }) {
  await page.fill('#config', JSON.stringify({ n_epochs: epochs }));
  await page.fill('#audit-config', JSON.stringify({ train: { n_epochs: auditEpochs, lr: 0.01, batch_size: auditBatch } }));
}

async function runToEnd(page) {
  await page.click('#run');
  await page.waitForFunction(() => ['done', 'failed'].includes(document.body.dataset.state), null, { timeout: RUN_TIMEOUT });
  assert.equal(await page.getAttribute('body', 'data-state'), 'done', await page.textContent('#error'));
}

/**
 * Clicks `selector` and returns the text the page would download, caught at the link the page
 * clicks (its name and the blob's text) rather than through Chromium's download machinery, which
 * the other exports exercise.
 */
async function savedText(page, selector) {
  return page.evaluate(async (sel) => {
    const click = HTMLAnchorElement.prototype.click;
    const caught = new Promise((ok) => {
      HTMLAnchorElement.prototype.click = function () { ok({ name: this.download, text: fetch(this.href).then((r) => r.text()) }); };
    });
    try {
      document.querySelector(sel).click();
      const { name, text } = await caught;
      return { name, text: await text };
    } finally {
      HTMLAnchorElement.prototype.click = click;
    }
  }, selector);
}

/** Clicks `selector` and returns the download's name and bytes. */
async function downloadOf(page, selector) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  return { name: download.suggestedFilename(), bytes: readFileSync(await download.path()) };
}

/** Decodes a PNG in the page: size, non-white pixels and distinct colours. */
async function pngStats(page, bytes) {
  return page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const canvas = new OffscreenCanvas(bmp.width, bmp.height);
    const ctx = canvas.getContext('2d');
    ctx.drawImage(bmp, 0, 0);
    const { data } = ctx.getImageData(0, 0, bmp.width, bmp.height);
    let ink = 0;
    const colors = new Set();
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 0 && (data[i] < 240 || data[i + 1] < 240 || data[i + 2] < 240)) {
        ink++;
        colors.add((data[i] >> 4) << 8 | (data[i + 1] >> 4) << 4 | (data[i + 2] >> 4));
      }
    }
    return { width: bmp.width, height: bmp.height, ink, colors: colors.size };
  }, Buffer.from(bytes).toString('base64'));
}

const count = (page, selector) => page.locator(selector).count();

test('ready demo on WebGPU: transfer + audit, every view drawn, every export re-opens', async (t) => {
  if (!existsSync(REFERENCE) || !existsSync(QUERY)) return t.skip('www/data/ demo files missing: run scripts/setup.sh');
  const browser = await launchChromium({ webgpu: true });
  try {
    const { page, errors, requests } = await openDemo(browser);
    await page.selectOption('#backend', 'webgpu');
    await page.waitForSelector('body[data-loaded^="webgpu|demo"]', { timeout: 120_000 });
    assert.match(await page.textContent('#data-summary'), /query: 2,700 cells/);
    assert.equal(await page.inputValue('#label-key'), 'bulk_labels');
    assert.ok(await page.isChecked('#ref-raw'), 'the reference X is scaled: .raw is used');
    assert.ok(!(await page.isChecked('#query-raw')), 'the counts query has no .raw');
    await configure(page, { epochs: 2, auditEpochs: 3, auditBatch: 128 });

    // Cancel stops a run and leaves the page usable.
    await page.click('#run');
    await page.waitForFunction(() => /training/.test(document.getElementById('progress-text').textContent), null, { timeout: 120_000 });
    await page.click('#cancel');
    await page.waitForFunction(() => document.body.dataset.state === 'cancelled', null, { timeout: 60_000 });

    await runToEnd(page);
    assert.equal(await page.getAttribute('#backend-badge', 'data-backend'), 'webgpu');
    assert.match(await page.textContent('#summary'), /Labelled 2,700 query cells with 10 reference classes/);

    // Views with content: 10 classes in the legend, bars in every plot, a dot per audited cell.
    await page.waitForSelector('#embedding[data-projection="umap"]', { timeout: 180_000 });
    assert.equal(await page.getAttribute('#embedding', 'data-points'), String(700 + 2700));
    assert.ok(await count(page, '#embedding .legend li') >= 4);
    assert.ok(await count(page, '#confidence rect.bar') >= 10);
    assert.equal(await count(page, '#datamap circle.dot'), 700);
    assert.equal(await count(page, '#trainability rect.bar'), 20);
    await page.waitForSelector('#saliency rect.bar', { timeout: 180_000 });
    assert.equal(await count(page, '#saliency rect.bar'), 20);
    assert.match(await page.textContent('#confusion'), /unlabelled/);
    // The low-confidence list: min(500, n) rows, least confident first, all below the threshold.
    const n = Number((await page.textContent('#low-count')).match(/^([\d,]+) of 2,700 cells/)[1].replace(/,/g, ''));
    const shown = await page.$$eval('#low-table tr', (rows) => rows.slice(1).map((r) => Number(r.children[2].textContent)));
    assert.equal(shown.length, Math.min(500, n));
    assert.ok(shown.every((c, i) => c < 0.5 && (i === 0 || c >= shown[i - 1])), 'ascending confidences below 0.5');

    // Hover card on a point.
    await page.selectOption('#color-by', 'confidence');
    await page.waitForSelector('#embedding[data-color-by="confidence"]');
    const box = await page.locator('#embedding canvas').boundingBox();
    let hovered = false;
    for (let dy = 0; dy < box.height / 2 && !hovered; dy += 10) { // rows from the middle outwards
      for (const y of [box.y + box.height / 2 + dy, box.y + box.height / 2 - dy]) {
        for (let x = box.x + 10; x < box.x + box.width && !hovered; x += 10) {
          await page.mouse.move(x, y);
          hovered = await page.locator('#embedding .hover-card').isVisible();
        }
      }
    }
    assert.ok(hovered, 'hovering the scatter shows a cell card');
    assert.match(await page.textContent('#embedding .hover-card'), /scNym: .+ \([01]\.\d{3}\)/);
    await page.screenshot({ path: join(artifacts, 'demo-webgpu.png'), fullPage: true });

    // Plot exports: PNGs with ink in several colours, SVGs that are SVG.
    const scatter = await pngStats(page, (await downloadOf(page, '[data-export=embedding][data-format=png]')).bytes);
    assert.ok(scatter.ink > 5000 && scatter.colors > 8, `embedding PNG: ${JSON.stringify(scatter)}`);
    const map = await pngStats(page, (await downloadOf(page, '[data-export=datamap][data-format=png]')).bytes);
    assert.ok(map.ink > 2000 && map.colors >= 3, `data map PNG: ${JSON.stringify(map)}`);
    const svg = (await downloadOf(page, '[data-export=confidence][data-format=svg]')).bytes.toString();
    assert.match(svg, /^<svg[^>]+xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    const scatterSvg = (await downloadOf(page, '[data-export=embedding][data-format=svg]')).bytes.toString();
    assert.equal(scatterSvg.match(/<circle /g).length, 3400);

    // Data exports re-open: the CSV's labels are the annotated h5ad's, the bundle loads.
    const csv = (await downloadOf(page, '#export-csv')).bytes.toString().trim().split('\n');
    assert.equal(csv.length, 2701);
    const header = csv[0].split(',');
    const labelColumn = header.indexOf('scNym');
    assert.ok(labelColumn > 0 && header.includes('scNym_confidence'));
    const csvLabels = csv.slice(1).map((line) => line.split(',')[labelColumn]);
    const csvConf = csv.slice(1).map((line) => Number(line.split(',')[header.indexOf('scNym_confidence')]));
    // The same labels in the files other viewers read (formats checked in tests/js/exports.test.mjs).
    const cxgFile = await savedText(page, '#export-cellxgene');
    assert.match(cxgFile.name, /pbmc3k_counts-scnym-cellxgene\.csv$/);
    const cxg = cxgFile.text.trim().split('\n').filter((l) => !l.startsWith('#'));
    assert.equal(cxg[0], 'index,scNym');
    assert.deepEqual(cxg.slice(1).map((l) => l.split(',')[1]), csvLabels);
    const meta = (await savedText(page, '#export-cellbrowser')).text.trim().split('\n').map((l) => l.split('\t'));
    assert.deepEqual(meta[0], ['cellId', 'scNym', 'scNym_confidence']);
    assert.deepEqual(meta.slice(1).map((r) => r[1]), csvLabels);
    const sets = JSON.parse((await savedText(page, '#export-vitessce')).text);
    const setOf = new Map(sets.tree[0].children.flatMap((c) => c.set.map(([cell]) => [cell, c.name])));
    assert.deepEqual(csv.slice(1).map((line) => setOf.get(line.split(',')[0])), csvLabels);
    const h5ad = await downloadOf(page, '#export-h5ad');
    assert.match(h5ad.name, /pbmc3k_counts-scnym\.h5ad$/);
    const bundle = await downloadOf(page, '#export-model');
    const auditCsv = (await downloadOf(page, '#export-audit')).bytes.toString().trim().split('\n');
    assert.equal(auditCsv.length, 701);
    assert.match(auditCsv[0], /conf,var,category/);
    const reopened = await page.evaluate(async ([h5, model]) => {
      const { open } = await import('sclabel');
      const sl = await open({ backend: 'cpu' });
      const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const d = await sl.load(bytes(h5), { name: 'exported.h5ad' });
      const m = await sl.loadModel(bytes(model));
      const out = { nObs: d.nObs, labels: await sl.obs(d, 'scNym'), conf: (await sl.obs(d, 'scNym_confidence')).map(Number), classes: m.classes };
      sl.close();
      return out;
    }, [h5ad.bytes.toString('base64'), bundle.bytes.toString('base64')]);
    assert.equal(reopened.nObs, 2700);
    assert.deepEqual(reopened.labels.map(String), csvLabels);
    assert.ok(reopened.conf.every((c, i) => Math.abs(c - csvConf[i]) < 1e-6), 'the h5ad and the CSV hold the same confidences');
    assert.equal(reopened.classes.length, 10);

    assert.deepEqual(errors, []);
    assert.equal(await page.textContent('#error'), '');
    const foreign = requests.filter((u) => !u.startsWith(base) && !u.startsWith('blob:') && !u.startsWith('data:'));
    assert.deepEqual(foreign, [], 'the demo requests nothing but its own files');
    await page.close();
  } finally {
    await browser.close();
  }
});

test('own data with WebGPU off: h5ad reference + Zarr-folder query with labels, CPU fallback, confusion matrix, a sampled embedding', async (t) => {
  if (!existsSync(REFERENCE)) return t.skip('www/data/ demo files missing: run scripts/setup.sh');
  const browser = await launchChromium({ webgpu: false });
  try {
    // The embedding draws a seeded sample of 500 of the 875 cells (50k by default).
    const { page, errors } = await openDemo(browser, '?embeddingCells=500');
    await page.check('input[name=source][value=own]');
    await page.setInputFiles('.drop[data-role=reference] .pick-file', REFERENCE);
    await page.setInputFiles('.drop[data-role=query] .pick-dir', ZARR_QUERY);
    await page.waitForSelector('body[data-loaded^="auto|own"]', { timeout: 120_000 });
    assert.match(await page.textContent('#data-summary'), /query: 175 cells/);
    assert.equal(await page.inputValue('#label-key'), 'bulk_labels');
    assert.ok(await page.isChecked('#query-raw'), 'the Zarr query X is scaled: its .raw is used');
    await page.selectOption('#query-label-key', 'bulk_labels');
    await page.selectOption('#preset', 'no_new_identity');
    await configure(page, { epochs: 8, auditEpochs: 20, auditBatch: 32 });
    await runToEnd(page);
    const badge = await page.getAttribute('#backend-badge', 'data-backend');
    assert.notEqual(badge, 'webgpu', 'WebGPU is off: the CPU runs');
    assert.match(await page.getAttribute('#backend-badge', 'title'), /WebGPU/i, 'the badge says why the CPU runs');

    assert.ok(await count(page, '#confusion rect.cell') >= 10);
    const agreement = Number((await page.textContent('#confusion svg text')).match(/agree on ([\d.]+)/)[1]);
    assert.ok(agreement > 0.5, `the query's cells are reference cells: agreement ${agreement}`);
    await page.waitForSelector('#embedding[data-projection="umap"]', { timeout: 180_000 });
    assert.equal(await page.getAttribute('#embedding', 'data-points'), '500');
    assert.match(await page.textContent('#projection-status'), /500 of 875 cells, a seeded random sample/);
    const svg = (await downloadOf(page, '[data-export=embedding][data-format=svg]')).bytes.toString();
    assert.equal(svg.match(/<circle/g).length, 500);
    await page.selectOption('#color-by', 'query-label');
    await page.waitForSelector('#embedding[data-color-by="query-label"]');
    assert.ok(await count(page, '#embedding .legend li') >= 5);
    assert.ok(await page.isDisabled('#export-h5ad'), 'a Zarr query has no .h5ad to annotate');
    await page.selectOption('#color-by', 'obs:n_genes'); // any obs column; numeric ones on a colour ramp
    await page.waitForSelector('#embedding[data-color-by="obs:n_genes"]');
    assert.equal(await count(page, '#embedding .legend .ramp'), 1);
    const confusion = await pngStats(page, (await downloadOf(page, '[data-export=confusion][data-format=png]')).bytes);
    assert.ok(confusion.ink > 2000 && confusion.colors > 3, `confusion PNG: ${JSON.stringify(confusion)}`);
    const csv = (await downloadOf(page, '#export-csv')).bytes.toString().trim().split('\n');
    assert.equal(csv.length, 176);
    await page.waitForSelector('#saliency rect.bar', { timeout: 180_000 });
    await page.screenshot({ path: join(artifacts, 'demo-cpu.png'), fullPage: true });
    assert.deepEqual(errors, []);
    assert.equal(await page.textContent('#error'), '');
    await page.close();
  } finally {
    await browser.close();
  }
});

test('an atlas from the page registry: instant annotation with a CellTypist model beside it, then fine-tuning, on the CPU', async (t) => {
  if (!existsSync(join(root, 'www', 'data', 'atlases.json'))) return t.skip('www/data/atlases.json missing: run scripts/build-www.sh');
  const browser = await launchChromium({ webgpu: false });
  try {
    const { page, errors, requests } = await openDemo(browser);
    await page.waitForSelector('#atlas option[value="0"]', { state: 'attached' });
    assert.ok(await page.isDisabled('#atlas-mode'), 'no atlas chosen: nothing to choose how');
    await page.selectOption('#backend', 'cpu');
    await page.selectOption('#atlas', '0');
    await page.waitForSelector('body[data-loaded$="|0"]', { timeout: 120_000 });
    assert.match(await page.textContent('#atlas-info'), /700 cells × 765 genes, 10 classes/);
    assert.equal(await page.inputValue('#label-key'), 'bulk_labels');
    await page.uncheck('#do-audit');
    await page.selectOption('#atlas-mode', 'instant');
    // A CellTypist model beside it, with majority voting: no training either.
    assert.ok(await page.isHidden('#celltypist-card'));
    await page.selectOption('#celltypist-model', 'demo');
    await page.check('#celltypist-voting');
    await runToEnd(page);
    assert.match(await page.textContent('#summary'), /2,700.*query cells by atlas pbmc68k-reduced \(instant annotation\)/);
    assert.ok(await page.isVisible('#celltypist-card'));
    assert.match(await page.textContent('#celltypist-summary'),
      /CellTypist \(celltypist_pbmc3k\.pkl, LogisticRegression, 10 types; 300 of its genes in the query\) gives the same label as scNym to [\d,]+ of 2,700 cells .*after majority voting \(\d+ clusters: Leiden/);
    assert.ok((await page.$$('#celltypist svg rect')).length > 10, 'the confusion matrix between the two is drawn');
    await page.waitForSelector('#embedding[data-projection]', { timeout: 180_000 });
    await page.selectOption('#color-by', 'celltypist');
    await page.waitForSelector('#embedding[data-color-by="celltypist"]', { timeout: 180_000 });
    const instant = (await downloadOf(page, '#export-csv')).bytes.toString().trim().split('\n');
    assert.equal(instant.length, 2701);
    assert.match(instant[0], /^cell,scNym,scNym_confidence,predicted_labels,conf_score,majority_voting,/);
    assert.ok(requests.some((u) => u.endsWith('/www/data/celltypist_pbmc3k.pkl')));
    await page.selectOption('#atlas-mode', 'fine-tune');
    await page.fill('#config', JSON.stringify({ n_epochs: 3 }));
    await runToEnd(page);
    assert.match(await page.textContent('#summary'), /by atlas pbmc68k-reduced \(fine-tuned\)/);
    assert.equal(await page.inputValue('#celltypist-model'), 'demo');
    assert.ok(await page.isVisible('#celltypist-card'), 'CellTypist stays beside the fine-tuned model');
    // The two label the query alike (the fine-tuned model starts from the atlas's).
    const tuned = (await downloadOf(page, '#export-csv')).bytes.toString().trim().split('\n');
    const label = (row) => row.split(',')[1];
    const agree = tuned.slice(1).filter((row, i) => label(row) === label(instant[i + 1])).length / 2700;
    assert.ok(agree > 0.6, `instant and fine-tuned labels agree on ${agree}`);
    await page.waitForSelector('#embedding[data-projection]', { timeout: 180_000 });
    await page.screenshot({ path: join(artifacts, 'demo-atlas.png'), fullPage: true });
    const atlasFiles = requests.filter((u) => u.includes('/www/data/atlases/')).map((u) => u.split('/').pop());
    assert.deepEqual([...new Set(atlasFiles)].sort(), ['atlas.json', 'matrix.safetensors.zlib', 'model.safetensors']);
    assert.ok(requests.every((u) => u.startsWith(base)), 'nothing but the page origin');
    assert.deepEqual(errors, []);
    assert.equal(await page.textContent('#error'), '');
    await page.close();
  } finally {
    await browser.close();
  }
});
