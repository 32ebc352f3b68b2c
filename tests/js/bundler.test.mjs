// `import { open } from 'sclabel'` in an app bundled by Vite, as a host installs the package:
// the app is built with the package linked into its node_modules, then run in headless Chromium
// (worker, wasm asset and vendored zarrita all resolved by the bundler).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { launchChromium, root } from './helpers.mjs';

const APP = `
import { open } from 'sclabel';
const sl = await open({ backend: 'cpu' });
const data = await sl.synthetic({ nCells: 300, nGenes: 60, nClasses: 3, seed: 1 });
const report = await sl.trainHoldout(data, { train: { n_epochs: 20, lr: 0.01, seed: 1 } });
document.body.dataset.result = JSON.stringify({ backend: sl.backend.backend, accuracy: report.test_accuracy });
`;

test('a Vite-bundled app imports sclabel and trains in its worker', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sclabel-vite-'));
  try {
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(root, join(dir, 'node_modules', 'sclabel'), 'dir');
    writeFileSync(join(dir, 'index.html'), '<!doctype html><html><body><script type="module" src="./main.js"></script></body></html>');
    writeFileSync(join(dir, 'main.js'), APP);
    const { build } = await import('vite');
    await build({ root: dir, logLevel: 'error', configFile: false, build: { outDir: join(dir, 'dist'), target: 'es2022' }, worker: { format: 'es' } });
    const assets = readdirSync(join(dir, 'dist', 'assets'));
    assert.ok(assets.some((f) => f.endsWith('.wasm')), `wasm emitted: ${assets.join(', ')}`);
    assert.ok(assets.some((f) => /worker/.test(f)), `worker emitted: ${assets.join(', ')}`);

    const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
    const server = createServer(async (req, res) => {
      try {
        const path = new URL(req.url, 'http://x').pathname;
        const body = await readFile(join(dir, 'dist', path === '/' ? 'index.html' : path));
        res.writeHead(200, { 'content-type': types[extname(path || '.html')] ?? 'text/html' });
        res.end(body);
      } catch { res.writeHead(404); res.end(); }
    });
    await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
    const browser = await launchChromium({ webgpu: false });
    try {
      const page = await browser.context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      await page.waitForFunction(() => document.body.dataset.result, null, { timeout: 120_000 });
      const result = JSON.parse(await page.evaluate(() => document.body.dataset.result));
      assert.equal(result.backend, 'flex');
      assert.ok(result.accuracy > 0.5, JSON.stringify(result));
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      server.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
