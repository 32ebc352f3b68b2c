// Prediction of a big all-gene .h5ad in headless Chromium (CPU backend, in the package's worker)
// against the native CLI on one thread, in the same run: cells per second of each, the wasm
// memory the prediction took, and whether the labels agree.
//
// The file is handed to the page as a user's pick (<input type=file>, set by Playwright with its
// path: Chromium reads it from disk, nothing is uploaded or copied), then `predictScnym(model,
// file)` reads it a block of cells at a time in the worker.
//
//   python bench/big_predict.py --cells 1000000          # the query and the 2,000-gene model
//   cargo build --features ndarray,cli --bin sclabel && bash scripts/build-wasm.sh
//   node bench/big_predict_browser.mjs --cells 1000000   # → bench/results/predict_browser_1000000.json
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../scripts/serve.mjs';
import { launchChromium, openHarness, root } from '../tests/js/helpers.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const cells = Number(arg('--cells', '1000000'));
const work = arg('--work', '/tmp/sclabel-big');
const query = join(work, `query_${cells}.h5ad`);
const model = join(work, 'model2000.safetensors');
const binary = arg('--binary', join(root, 'target', 'debug', 'sclabel'));

// Native, one thread, the same streamed prediction.
const nativeOut = join(work, `pred_native_${cells}.csv`);
const t0 = performance.now();
execFileSync('/usr/bin/time', ['-f', 'maxrss_kb=%M', binary, '--quiet', 'predict', '--model', model, '--input', query, '--normalize', '--out', nativeOut],
  { env: { ...process.env, RAYON_NUM_THREADS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
const nativeSeconds = (performance.now() - t0) / 1000;
const nativeLabels = readFileSync(nativeOut, 'utf8').trim().split('\n').slice(1).map((l) => l.split(',')[1]);
console.log(`native, one thread: ${cells} cells in ${nativeSeconds.toFixed(1)} s (${(cells / nativeSeconds).toFixed(0)} cells/s)`);

const server = await startServer(0);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium({ webgpu: false });
try {
  const { page, errors } = await openHarness(browser, base);
  await page.goto(`${base}/tests/js/harness.html`);
  await page.evaluate(() => { const i = document.createElement('input'); i.type = 'file'; i.id = 'f'; document.body.append(i); });
  await page.setInputFiles('#f', query);
  const modelBytes = Array.from(readFileSync(model));
  const out = await page.evaluate(async ({ modelBytes }) => {
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    const m = await sl.loadModel(new Uint8Array(modelBytes));
    const before = (await sl.memoryUsage()).wasmBytes;
    const file = document.getElementById('f').files[0];
    const t = performance.now();
    let last = 0;
    const p = await sl.predictScnym(m, file, { normalize: true, embedding: false }, { onProgress: (e) => { last = e.cells_done; } });
    const seconds = (performance.now() - t) / 1000;
    const after = (await sl.memoryUsage()).wasmBytes;
    sl.close();
    return { seconds, before, after, cells: p.cells, last, labels: p.scNym };
  }, { modelBytes });
  const agree = out.labels.filter((l, i) => l === nativeLabels[i]).length / cells;
  const result = {
    task: `predictScnym(model, File) of ${cells} resampled pbmc3k cells × 32,738 genes (scripts/make-big-h5ad.py) with a 2,000-gene model, CPU backend`,
    file_bytes: statSync(query).size,
    chromium: { seconds: out.seconds, cells_per_second: cells / out.seconds, wasm_bytes_before: out.before, wasm_bytes_after: out.after, last_progress_cells: out.last },
    native_one_thread: { seconds: nativeSeconds, cells_per_second: cells / nativeSeconds },
    native_over_chromium: (cells / nativeSeconds) / (cells / out.seconds),
    labels_agreeing_with_native: agree,
    page_errors: errors.map(String),
  };
  console.log(`Chromium: ${out.cells} cells in ${out.seconds.toFixed(1)} s (${(cells / out.seconds).toFixed(0)} cells/s, ${result.native_over_chromium.toFixed(2)}× slower than native); `
    + `wasm memory ${(out.before / 2 ** 20).toFixed(0)} → ${(out.after / 2 ** 20).toFixed(0)} MiB; labels agreeing with native ${agree}`);
  const path = join(root, 'bench', 'results', `predict_browser_${cells}.json`);
  writeFileSync(path, JSON.stringify(result, null, 2));
  console.log(`wrote ${path}`);
} finally {
  await browser.close();
  server.close();
}
