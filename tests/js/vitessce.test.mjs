// sclabel's Vitessce view (src/js/vitessce.js) in the real Vitessce (@vitessce/all 4.0.8), on the
// demo's "view in Vitessce" page (www/vitessce.html) in headless Chromium: Vitessce loads the
// example AnnData-Zarr through its own loaders, the view transfers the demo atlas's labels to it,
// and the result must come back into Vitessce as cell sets holding exactly the cells sclabel
// labels so (checked against the package run directly in Node on the same store), shown in
// Vitessce's set manager and selected for colouring; a gene from an explanation colours the views.
// Nothing may be requested beyond the config's URLs and the page's and package's own files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';
import { open } from 'sclabel';
import { launchChromium, artifacts, root } from './helpers.mjs';

const ZARR = join(root, 'www', 'data', 'pbmc3k.zarr');
let server, base;
before(async () => {
  server = await startServer(0);
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => server?.close());

/** What the package itself predicts for the example (Node, CPU): cell name → [label, confidence]. */
async function expected() {
  const sl = await open({ backend: 'cpu' });
  try {
    const atlas = await sl.openAtlas(`${base}/www/data/atlases/pbmc68k-reduced/atlas.json`, { reference: false });
    const data = await sl.load(ZARR);
    const p = await sl.predictScnym(atlas.model, data, { normalize: true, embedding: false });
    const names = await sl.obsNames(data);
    return { setName: `sclabel: ${atlas.manifest.name}`, byCell: new Map(names.map((n, i) => [n, [p.scNym[i], p.scNym_confidence[i]]])) };
  } finally {
    sl.close();
  }
}

/** The demo's Vitessce page, its uncaught errors and every request it makes recorded. */
async function openVitesscePage(browser) {
  const page = await browser.context.newPage();
  const errors = [], requests = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`${base}/www/vitessce.html`);
  return { page, errors, requests };
}

test('the sclabel view labels the data set Vitessce loaded and hands the labels back as cell sets', { timeout: 600_000 }, async (t) => {
  if (!existsSync(join(root, 'www', 'vendor', 'vitessce', 'vitessce-all.js')) || !existsSync(ZARR)) {
    t.skip('the Vitessce page is not built (scripts/build-www.sh)');
    return;
  }
  const want = await expected();
  const browser = await launchChromium({ webgpu: false });
  try {
    const { page, errors, requests } = await openVitesscePage(browser);

    // The registry's atlas is offered, and the run waits for Vitessce's matrix.
    const source = page.locator('select[data-sclabel=source]');
    await source.locator('option[value="atlas:0"]').waitFor({ state: 'attached', timeout: 120_000 });
    await source.selectOption('atlas:0');
    const run = page.locator('button[data-sclabel=run]');
    await page.waitForFunction(() => document.querySelector('button[data-sclabel=run]')?.disabled === false, null, { timeout: 120_000 });
    await run.click();
    await page.waitForSelector('[data-sclabel-state=done], [data-sclabel-state=failed]', { timeout: 300_000 });
    const state = await page.locator('.sclabel-view').getAttribute('data-sclabel-state');
    assert.equal(state, 'done', await page.locator('.sclabel-view').innerText());

    // The cell sets, as Vitessce's own config now holds them.
    const space = await page.evaluate(() => window.vitessceConfig.coordinationSpace);
    const [scope] = Object.keys(space.additionalObsSets);
    const sets = space.additionalObsSets[scope];
    assert.equal(sets.version, '0.1.3');
    const node = sets.tree.find((n) => n.name === want.setName);
    assert.ok(node, `a set named '${want.setName}' in ${sets.tree.map((n) => n.name).join(', ')}`);
    const seen = new Map();
    for (const child of node.children) {
      for (const [cell, score] of child.set) {
        assert.ok(!seen.has(cell), `cell ${cell} in two sets`);
        seen.set(cell, [child.name, score]);
      }
    }
    assert.equal(seen.size, want.byCell.size, 'every cell in one label set');
    let mismatched = 0, worst = 0;
    for (const [cell, [label, conf]] of want.byCell) {
      const [gotLabel, gotScore] = seen.get(cell) ?? [];
      if (gotLabel !== label) mismatched += 1;
      worst = Math.max(worst, Math.abs(gotScore - conf));
    }
    assert.equal(mismatched, 0, 'cells whose set differs from the package run directly');
    assert.ok(worst < 1e-5, `scores equal the confidences (largest difference ${worst})`);
    assert.ok(sets.tree.some((n) => n.name === `${want.setName} (confidence)` && n.children.length > 0), 'confidence bands as sets');

    // Selected for colouring, with colours, and listed in Vitessce's set manager.
    assert.equal(space.obsColorEncoding[scope], 'cellSetSelection');
    assert.deepEqual(space.obsSetSelection[scope], node.children.map((c) => [node.name, c.name]));
    assert.equal(space.obsSetColor[scope].filter((c) => c.path[0] === node.name).length, node.children.length);
    await page.getByText(want.setName, { exact: true }).first().waitFor({ timeout: 30_000 });

    // An explanation's gene colours the views by it.
    const firstLabel = node.children[0].name;
    await page.locator('[data-sclabel=result] tr', { hasText: firstLabel }).getByRole('button', { name: 'genes' }).click();
    const gene = page.locator('[data-sclabel=genes] button').first();
    await gene.waitFor({ timeout: 300_000 });
    const geneName = await gene.innerText();
    await gene.click();
    await page.waitForFunction((g) => {
      const s = window.vitessceConfig.coordinationSpace;
      return Object.values(s.featureSelection ?? {}).some((v) => v?.[0] === g) && Object.values(s.obsColorEncoding).includes('geneSelection');
    }, geneName, { timeout: 30_000 });
    await page.screenshot({ path: join(artifacts, 'vitessce.png') });

    // Only the page's, the package's and the config's files were requested.
    const allowed = ['/www/vitessce.html', '/www/vitessce.js', '/www/style.css', '/www/vendor/vitessce/', '/pkg/', '/www/data/pbmc3k.zarr/', '/www/data/atlases.json', '/www/data/atlases/'];
    const outside = requests.filter((u) => {
      if (/^(data|blob):/.test(u)) return false;
      const url = new URL(u);
      return url.origin !== base || !allowed.some((p) => url.pathname.startsWith(p));
    });
    assert.deepEqual(outside, [], 'requests beyond the config, the page and the package');
    assert.deepEqual(errors.map(String), []);
  } finally {
    await browser.close();
  }
});

test('the page opens a zipped AnnData-Zarr picked on this computer, read where it lies', { timeout: 300_000 }, async (t) => {
  if (!existsSync(join(root, 'www', 'vendor', 'vitessce', 'vitessce-all.js'))) {
    t.skip('the Vitessce page is not built (scripts/build-www.sh)');
    return;
  }
  // Zipped as `zip -r` does, under a top folder (Vitessce's entry naming looks through it).
  const zip = join(root, 'tests', 'fixtures', 'zarr', 'pancreas_wang_csc.v2.zarr.zip');
  const sl = await open({ backend: 'cpu' });
  const data = await sl.load(zip);
  sl.close();
  const browser = await launchChromium({ webgpu: false });
  try {
    const { page, errors, requests } = await openVitesscePage(browser);
    await page.setInputFiles('#zip', zip);
    await page.fill('#embedding', '');
    await page.click('#open button[type=submit]');
    const size = page.locator('.sclabel-size');
    await page.waitForFunction(() => /pancreas/.test(window.vitessceConfig?.name ?? '') && document.querySelector('.sclabel-size'), null, { timeout: 120_000 });
    assert.equal(await size.innerText(), `${data.nObs.toLocaleString('en-US')} cells × ${data.nVars.toLocaleString('en-US')} genes`);
    assert.deepEqual(requests.filter((u) => /\/local\/|\.zip/.test(u)), [], 'the picked file is never requested over HTTP');
    assert.deepEqual(errors.map(String), []);
  } finally {
    await browser.close();
  }
});

// The README's host lines in an app Vite builds as a host would (the package linked into its
// node_modules; React and Vitessce resolved from the project's): the same imports and render call,
// with a real config, the demo's registry and an onResult for the test to wait on.
const HOST_APP = `
import { createElement as h } from 'react';
import { createRoot } from 'react-dom/client';
import { Vitessce } from '@vitessce/all';
import { sclabelViewType } from 'sclabel/vitessce';

const config = {
  version: '1.0.17', name: 'host', initStrategy: 'auto',
  datasets: [{ uid: 'd', name: 'pbmc3k', files: [{ fileType: 'anndata.zarr', url: new URL('/data/pbmc3k.zarr', location.href).href, options: { obsFeatureMatrix: { path: 'X' } } }] }],
  layout: [{ component: 'obsSets', x: 0, y: 0, w: 6, h: 8 }],
};
const pluginViewTypes = [sclabelViewType({ registry: new URL('/data/atlases.json', location.href).href, onResult: (r) => { window.labelled = r.prediction.cells; } })];
config.layout.push({ component: 'sclabel', x: 9, y: 0, w: 3, h: 8 });
createRoot(document.getElementById('app')).render(h(Vitessce, { config, pluginViewTypes, theme: 'light', height: 800 }));
`;

test('a host app built by Vite adds the view with the README\'s lines', { timeout: 600_000 }, async (t) => {
  if (!existsSync(ZARR)) {
    t.skip('the Vitessce example is not built (scripts/build-www.sh)');
    return;
  }
  // Inside the project, so React and Vitessce resolve from its node_modules as from a host's.
  const dir = join(root, 'tests', 'artifacts', 'vite-vitessce-host');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  symlinkSync(root, join(dir, 'node_modules', 'sclabel'), 'dir');
  writeFileSync(join(dir, 'index.html'), '<!doctype html><html><body><div id="app"></div><script type="module" src="./main.js"></script></body></html>');
  writeFileSync(join(dir, 'main.js'), HOST_APP);
  const { build } = await import('vite');
  await build({ root: dir, logLevel: 'error', configFile: false, build: { outDir: join(dir, 'dist'), target: 'es2022' }, worker: { format: 'es' } });
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
  const hostServer = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = path.startsWith('/data/') ? normalize(join(root, 'www', path)) : normalize(join(dir, 'dist', path === '/' ? 'index.html' : path));
    try {
      const body = readFileSync(file);
      res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((ok) => hostServer.listen(0, '127.0.0.1', ok));
  const browser = await launchChromium({ webgpu: false });
  try {
    const page = await browser.context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    await page.goto(`http://127.0.0.1:${hostServer.address().port}/`);
    const source = page.locator('select[data-sclabel=source]');
    await source.locator('option[value="atlas:0"]').waitFor({ state: 'attached', timeout: 120_000 });
    await source.selectOption('atlas:0');
    await page.waitForFunction(() => document.querySelector('button[data-sclabel=run]')?.disabled === false, null, { timeout: 120_000 });
    await page.click('button[data-sclabel=run]');
    await page.waitForFunction(() => window.labelled, null, { timeout: 300_000 });
    assert.equal(await page.evaluate(() => window.labelled), 2700);
    await page.getByText('sclabel: PBMC 68k', { exact: false }).first().waitFor({ timeout: 30_000 });
    assert.deepEqual(errors.map(String), []);
  } finally {
    await browser.close();
    hostServer.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
