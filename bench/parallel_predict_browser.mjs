// scNym prediction of a loaded data set in headless Chromium (CPU backend) on one worker against
// the same prediction split across `--workers` workers (open({ predictWorkers })), in the same
// page: the same model (a bundle loaded into both clients) and the same cells — a user's .h5ad
// loaded with `--genes` (a gene list file, e.g. 2,000 HVGs), or seeded synthetic cells.
// Each client is warmed up once (helpers started, model sent), then the runs alternate; the
// result is the ratio of median seconds. The labels must agree exactly.
//
//   bash scripts/build-wasm.sh
//   python scripts/make-big-h5ad.py --cells 100000 --out /tmp/big100k.h5ad
//   node bench/parallel_predict_browser.mjs --file /tmp/big100k.h5ad \
//       --genes ../shared/reference-outputs/annotatability-pbmc3k-audit/pbmc3k_hvg2000.txt [--workers 2] [--reps 3]
//   node bench/parallel_predict_browser.mjs --cells 20000 --n-genes 500   (synthetic)
//     [--no-embedding] → bench/results/parallel_predict_browser[_no_embedding].json
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../scripts/serve.mjs';
import { launchChromium, openHarness, root } from '../tests/js/helpers.mjs';

const text = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : null;
};
const arg = (name, fallback) => Number(text(name) ?? fallback);
const file = text('--file');
const genes = text('--genes') && readFileSync(text('--genes'), 'utf8').split(/\r?\n/).filter(Boolean);
const spec = { nCells: arg('--cells', 20000), nGenes: arg('--n-genes', 500), nClasses: 8, seed: 11 };
const workers = arg('--workers', 2);
const reps = arg('--reps', 3);
const embedding = !process.argv.includes('--no-embedding');

const server = await startServer(0);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium({ webgpu: false });
try {
  const { page, errors } = await openHarness(browser, base);
  if (file) {
    await page.evaluate(() => { const i = document.createElement('input'); i.type = 'file'; i.id = 'f'; document.body.append(i); });
    await page.setInputFiles('#f', file);
  }
  const out = await page.evaluate(async ({ spec, workers, reps, genes, labelKey, embedding }) => {
    const { open } = await import('sclabel');
    const one = await open({ backend: 'cpu', predictWorkers: 1 });
    const many = await open({ backend: 'cpu', predictWorkers: workers });
    const picked = document.getElementById('f')?.files[0];
    const setUp = async (sl, bundle) => {
      const data = picked ? await sl.load(picked, { genes }) : await sl.synthetic(spec);
      let model;
      if (bundle) {
        model = await sl.loadModel(bundle);
      } else {
        const train = await sl.subset(data, Array.from({ length: 3000 }, (_, i) => i));
        model = await sl.trainScnym(train, null, { label_key: labelKey, normalize: true, config: { n_epochs: 2, seed: 1 } });
      }
      return { sl, data, model };
    };
    const a = await setUp(one, null);
    const b = await setUp(many, await one.saveModel(a.model));
    const options = { normalize: true, embedding };
    const time = async ({ sl, data, model }) => {
      const t = performance.now();
      const p = await sl.predictScnym(model, data, options);
      return { seconds: (performance.now() - t) / 1000, labels: p.scNym };
    };
    const warm = [await time(a), await time(b)];
    const seconds = { one: [], many: [] };
    for (let r = 0; r < reps; r++) {
      seconds.one.push((await time(a)).seconds);
      seconds.many.push((await time(b)).seconds);
    }
    const same = warm[0].labels.every((l, i) => l === warm[1].labels[i]);
    one.close();
    many.close();
    return { cells: a.data.nObs, genes: a.data.nVars, nnz: a.data.summary.nnz, seconds, warm_up_seconds: { one: warm[0].seconds, many: warm[1].seconds }, labels_identical: same, hardware_concurrency: navigator.hardwareConcurrency };
  }, { spec, workers, reps, genes, labelKey: 'cell_type', embedding });
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const result = {
    task: `predictScnym of a loaded data set (${file ? `${file}, ${genes?.length ?? 'all'} genes kept` : `synthetic, ${spec.nCells} cells × ${spec.nGenes} genes`}), embedding ${embedding ? 'on' : 'off'}, CPU backend, Chromium`,
    machine_cores: cpus().length,
    workers,
    ...out,
    median_seconds: { one: median(out.seconds.one), many: median(out.seconds.many) },
    speedup: median(out.seconds.one) / median(out.seconds.many),
    page_errors: errors.map(String),
  };
  console.log(JSON.stringify(result, null, 1));
  writeFileSync(join(root, 'bench', 'results', `parallel_predict_browser${embedding ? '' : '_no_embedding'}.json`), `${JSON.stringify(result, null, 1)}\n`);
} finally {
  await browser.close();
  server.close();
}
