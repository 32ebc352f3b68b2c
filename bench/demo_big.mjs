// The demo page on a big query, as a user would run it: own data, reference = the demo's
// pbmc68k_reduced.h5ad (labelled), query = an all-gene .h5ad from scripts/make-big-h5ad.py, picked
// through the page's file inputs; CPU backend (WebGPU off). Times loading, the run (train on a
// subsample of the query, label every cell, audit the reference) and the exports.
//
//   python scripts/make-big-h5ad.py --cells 100000 --out /tmp/sclabel-big/query_100000.h5ad
//   node bench/demo_big.mjs [--query /tmp/sclabel-big/query_100000.h5ad] [--epochs 20]
import { writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../scripts/serve.mjs';
import { launchChromium, root } from '../tests/js/helpers.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const query = arg('--query', '/tmp/sclabel-big/query_100000.h5ad');
const epochs = Number(arg('--epochs', '20'));

const server = await startServer(0);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium({ webgpu: false });
const result = { query, query_bytes: statSync(query).size, epochs };
try {
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${base}/www/`);
  await page.check('input[name=source][value=own]');
  let t = performance.now();
  await page.setInputFiles('.drop[data-role=reference] .pick-file', join(root, 'www', 'data', 'pbmc68k_reduced.h5ad'));
  await page.setInputFiles('.drop[data-role=query] .pick-file', query);
  await page.waitForSelector('body[data-loaded^="auto|own"]', { timeout: 1_800_000 });
  result.load_seconds = (performance.now() - t) / 1000;
  result.summary = await page.textContent('#data-summary');
  console.log(`loaded in ${result.load_seconds.toFixed(1)} s: ${result.summary}`);
  await page.fill('#config', JSON.stringify({ n_epochs: epochs }));
  t = performance.now();
  await page.click('#run');
  const etas = new Set();
  while (!['done', 'failed'].includes(await page.getAttribute('body', 'data-state'))) {
    const text = await page.textContent('#progress-text');
    if (/cells/.test(text)) etas.add(`${text} — ${await page.textContent('#eta')}`);
    await page.waitForTimeout(2000);
  }
  result.run_seconds = (performance.now() - t) / 1000;
  result.state = await page.getAttribute('body', 'data-state');
  result.error = await page.textContent('#error');
  result.progress_samples = [...etas].slice(0, 5);
  console.log(`run: ${result.state} in ${result.run_seconds.toFixed(1)} s ${result.error}`);
  if (result.state === 'done') {
    result.status = await page.textContent('#summary');
    await page.waitForSelector('#embedding[data-projection]', { timeout: 600_000 }).catch(() => {});
    result.embedding_points = await page.getAttribute('#embedding', 'data-points');
    result.projection = await page.textContent('#projection-status');
    // The UMAP of the drawn sample (≤ 50,000 cells), timed from the run's end.
    const umapStart = performance.now();
    await page.waitForSelector('#embedding[data-projection="umap"]', { timeout: 1_200_000 }).catch(() => {});
    result.umap_seconds_after_run = (performance.now() - umapStart) / 1000;
    result.projection_final = await page.textContent('#projection-status');
    result.embedding_points_final = await page.getAttribute('#embedding', 'data-points');
    for (const id of ['export-csv', 'export-h5ad']) {
      t = performance.now();
      const download = await Promise.race([
        page.waitForEvent('download', { timeout: 900_000 }).then(async (d) => ({ ok: statSync(await d.path()).size })),
        page.waitForFunction(() => document.getElementById('error').textContent !== '', null, { timeout: 900_000 }).then(async () => ({ error: await page.textContent('#error') })),
        page.click(`#${id}`).then(() => new Promise(() => {})),
      ]);
      result[id] = { ...download, seconds: (performance.now() - t) / 1000 };
      console.log(id, JSON.stringify(result[id]).slice(0, 400));
      await page.evaluate(() => { document.getElementById('error').textContent = ''; });
    }
  }
  result.page_errors = errors;
} finally {
  await browser.close();
  server.close();
  writeFileSync(join(root, 'bench', 'results', 'demo_big.json'), JSON.stringify(result, null, 2));
}
