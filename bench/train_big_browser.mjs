// scNym training on a big labelled reference in headless Chromium (CPU backend, the package's
// worker): the reference file handed to the page as a user's pick and trained from directly
// (`trainScnym(file)`: read a block of cells at a time, its genes held compactly), against
// loading the same file first and training on the loaded data set, each in its own page (its own
// worker and wasm memory), in the same run.
//
//   python scripts/make-big-h5ad.py --cells 1000000 --out /tmp/ref1m_2k.h5ad --seed 1 \
//       --genes ../shared/reference-outputs/annotatability-pbmc3k-audit/pbmc3k_hvg2000.txt
//   bash scripts/build-wasm.sh
//   node bench/train_big_browser.mjs --reference /tmp/ref1m_2k.h5ad [--epochs 1]
//     → bench/results/train_browser_<cells>.json
import { writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../scripts/serve.mjs';
import { launchChromium, openHarness, root } from '../tests/js/helpers.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const reference = arg('--reference', '/tmp/ref1m_2k.h5ad');
const epochs = Number(arg('--epochs', '1'));
const options = { label_key: 'cell_type', normalize: true, exclude_labels: ['unlabeled_QCfail'], preset: 'no_new_identity', config: { n_epochs: epochs, seed: 0 } };

const server = await startServer(0);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium({ webgpu: false });
const result = { reference, file_bytes: statSync(reference).size, options };

/** Runs `how` ('file' or 'loaded') in a fresh page: seconds, wasm memory, the model's summary or the error. */
async function run(how) {
  const { page, errors } = await openHarness(browser, base);
  await page.goto(`${base}/tests/js/harness.html`);
  await page.evaluate(() => { const i = document.createElement('input'); i.type = 'file'; i.id = 'f'; document.body.append(i); });
  await page.setInputFiles('#f', reference);
  const out = await page.evaluate(async ({ how, options }) => {
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    const before = (await sl.memoryUsage()).wasmBytes;
    const file = document.getElementById('f').files[0];
    const t = performance.now();
    let phases = 0;
    try {
      const data = how === 'file' ? file : await sl.load(file);
      const loadSeconds = (performance.now() - t) / 1000;
      const model = await sl.trainScnym(data, null, options, { onProgress: () => { phases += 1; } });
      return {
        ok: true, load_seconds: how === 'file' ? null : loadSeconds, seconds: (performance.now() - t) / 1000, before, after: (await sl.memoryUsage()).wasmBytes,
        genes: model.genes.length, classes: model.classes.length, warnings: model.warnings, metrics: model.info?.metrics ?? null, progress_events: phases,
      };
    } catch (e) {
      // After a crash the client answers nothing more: no memory reading then.
      const after = await sl.memoryUsage().then((m) => m.wasmBytes, () => null);
      return { ok: false, error: `[${e.code}] ${e.message}`, seconds: (performance.now() - t) / 1000, before, after };
    } finally {
      sl.close();
    }
  }, { how, options });
  await page.close();
  return { ...out, page_errors: errors.map(String) };
}

try {
  for (const how of ['file', 'loaded']) {
    result[how] = await run(how);
    const r = result[how];
    console.log(`${how}: ${r.ok ? 'trained' : r.error} in ${r.seconds.toFixed(1)} s; wasm memory ${(r.before / 2 ** 20).toFixed(0)} → ${r.after === null ? '?' : (r.after / 2 ** 20).toFixed(0)} MiB`);
  }
} finally {
  await browser.close();
  server.close();
  const path = join(root, 'bench', 'results', `train_browser_${reference.split('/').pop().replace(/\.h5ad$/, '')}.json`);
  writeFileSync(path, JSON.stringify(result, null, 2));
  console.log(`wrote ${path}`);
}
