// Two builds of the CPU wasm module compared in headless Chromium, each in its own client
// (worker): e.g. the shipped one and one compiled otherwise (burn-flex for size, LTO). Same data
// (the demo pair), runs alternated, median seconds per operation; the ratio says what the other
// build costs or gains.
//
//   node bench/cpu_module_opt_browser.mjs A B [--reps 3] [--out NAME]   (paths under the repository)
//     → bench/results/NAME.json (default cpu_module_opt_browser)
// A and B: a `.wasm` built with the same wasm-bindgen glue as pkg/ (loaded as `wasmCpu`), or a
// copy of a whole package's `index.js` (its own glue: builds whose glue differs, as with LTO).
import { writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { startServer } from '../scripts/serve.mjs';
import { launchChromium, openHarness, root } from '../tests/js/helpers.mjs';

const [a, b] = process.argv.slice(2).filter((x) => x.endsWith('.wasm') || x.endsWith('.js'));
const outName = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : 'cpu_module_opt_browser';
const reps = Number(process.argv[process.argv.indexOf('--reps') + 1] || 3) || 3;
const server = await startServer(0);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium({ webgpu: false });
try {
  const { page, errors } = await openHarness(browser, base);
  const urls = [a, b].map((p) => `/${relative(root, resolve(p))}`);
  const out = await page.evaluate(async ({ urls, reps }) => {
    const clients = await Promise.all(urls.map(async (u) => (u.endsWith('.js')
      ? (await import(u)).open({ backend: 'cpu', predictWorkers: 1 })
      : (await import('sclabel')).open({ backend: 'cpu', wasmCpu: u, predictWorkers: 1 }))));
    const sets = await Promise.all(clients.map(async (sl) => {
      const reference = await sl.load('/www/data/pbmc68k_reduced.h5ad');
      const query = await sl.load('/www/data/pbmc3k_counts.h5ad');
      return { sl, reference, query };
    }));
    const ops = {
      train: async ({ sl, reference, query }) => { const m = await sl.trainScnym(reference, query, { label_key: 'bulk_labels', normalize: true, use_raw: true, query_use_raw: false, config: { n_epochs: 5, seed: 1 } }); await sl.free(m); },
      // Input dropout: a configuration the host executor does not cover, so burn's kernels train.
      trainBurnStudent: async ({ sl, reference, query }) => { const m = await sl.trainScnym(reference, query, { label_key: 'bulk_labels', normalize: true, use_raw: true, query_use_raw: false, config: { n_epochs: 3, seed: 1, model_kwargs: { init_dropout: 0.1 } } }); await sl.free(m); },
      predict: async (s) => { s.model ??= await s.sl.trainScnym(s.reference, null, { label_key: 'bulk_labels', normalize: true, use_raw: true, config: { n_epochs: 2, seed: 1 } }); await s.sl.predictScnym(s.model, s.query, { normalize: true }); },
      explain: async (s) => { await s.sl.explainScnym(s.model, s.reference, 'bulk_labels', { target: 'CD14+ Monocyte', n_cells: 50, normalize: true, use_raw: true }); },
      audit: async ({ sl, reference }) => { await sl.audit(reference, { label_key: 'bulk_labels', use_raw: true, train: { n_epochs: 10 } }); },
    };
    const seconds = {};
    for (const [name, op] of Object.entries(ops)) {
      seconds[name] = [[], []];
      for (let r = 0; r < reps; r++) {
        for (let k = 0; k < 2; k++) {
          const t = performance.now();
          await op(sets[k]);
          seconds[name][k].push((performance.now() - t) / 1000);
        }
      }
    }
    clients.forEach((c) => c.close());
    const median = (v) => [...v].sort((x, y) => x - y)[v.length >> 1];
    return Object.fromEntries(Object.entries(seconds).map(([n, [x, y]]) => [n, { a: median(x), b: median(y), b_over_a: median(y) / median(x) }]));
  }, { urls, reps });
  const result = { what: 'median seconds per operation, CPU module A vs B, headless Chromium, demo pair', date: new Date().toISOString(), a, b, reps, ...out,
    command: `node bench/cpu_module_opt_browser.mjs ${a} ${b} --reps ${reps}${outName === 'cpu_module_opt_browser' ? '' : ` --out ${outName}`}` };
  writeFileSync(join(root, 'bench', 'results', `${outName}.json`), `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
  if (errors.length) console.log('page errors:', errors.map(String));
} finally {
  await browser.close();
  server.close();
}
