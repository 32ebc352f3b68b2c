// scNym training on the demo pair (700-cell reference, 2,700-cell query, 30 epochs) in headless
// Chromium on the CPU module against the native CLI on one thread, in the same script: seconds per
// epoch after the first (the first holds set-up and warm-up on both sides), from the epoch ends'
// times (onProgress in the page, --progress-log natively). Runs alternate; medians are compared.
//
//   cargo build --release --features cli && bash scripts/build-wasm.sh && bash scripts/build-www.sh
//   node bench/train_wasm_vs_native.mjs [--runs 3] [--epochs 30]   → bench/results/train_wasm_vs_native.json
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../scripts/serve.mjs';
import { launchChromium, openHarness, root } from '../tests/js/helpers.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const runs = arg('--runs', 3);
const epochs = arg('--epochs', 30);
const seed = 1;
const reference = join(root, 'www/data/pbmc68k_reduced.h5ad');
const query = join(root, 'www/data/pbmc3k_counts.h5ad');
const cli = join(root, 'target/release/sclabel');
const dir = mkdtempSync(join(tmpdir(), 'sclabel-train-'));
writeFileSync(join(dir, 'config.json'), JSON.stringify({ n_epochs: epochs }));

/** Seconds per epoch after the first, from the times (s) at which epochs ended. */
const steady = (ends) => (ends.at(-1) - ends[0]) / (ends.length - 1);

function native() {
  const log = join(dir, `native-${Math.random().toString(36).slice(2)}.jsonl`);
  execFileSync(cli, ['train', '--reference', reference, '--query', query, '--label-key', 'bulk_labels', '--use-raw',
    '--query-use-raw', 'false', '--normalize', '--config', join(dir, 'config.json'), '--seed', String(seed),
    '--out', join(dir, 'model.safetensors'), '--quiet', '--progress-log', log], { env: { ...process.env, RAYON_NUM_THREADS: '1' }, stdio: 'pipe' });
  const events = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const ends = events.filter((e) => e.progress.phase === 'train' && e.progress.loss != null);
  return { epoch_s: steady(ends.map((e) => e.t)), losses: ends.map((e) => e.progress.loss) };
}

const server = await startServer(0);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium({ webgpu: false });
try {
  const { page, errors } = await openHarness(browser, base);
  await page.evaluate(async () => {
    const { open } = await import('sclabel');
    const sl = await open({ backend: 'cpu' });
    window.bench = { sl, reference: await sl.load('/www/data/pbmc68k_reduced.h5ad'), query: await sl.load('/www/data/pbmc3k_counts.h5ad') };
  });
  const wasm = () => page.evaluate(async ({ epochs, seed }) => {
    const { sl, reference, query } = window.bench;
    const ends = [];
    const losses = [];
    const model = await sl.trainScnym(reference, query, { label_key: 'bulk_labels', normalize: true, use_raw: true, query_use_raw: false, config: { n_epochs: epochs, seed } }, {
      onProgress: (p) => { if (p.phase === 'train' && p.loss != null) { ends.push(performance.now() / 1000); losses.push(p.loss); } },
    });
    await sl.free(model);
    return { ends, losses };
  }, { epochs, seed }).then(({ ends, losses }) => ({ epoch_s: steady(ends), losses }));
  const out = { native: [], wasm: [] };
  for (let r = 0; r < runs; r++) {
    out.native.push(native());
    out.wasm.push(await wasm());
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
  const [n, w] = [median(out.native.map((x) => x.epoch_s)), median(out.wasm.map((x) => x.epoch_s))];
  const result = {
    what: `scNym training, demo pair (${reference.split('/').pop()} reference, ${query.split('/').pop()} query), ${epochs} epochs, seed ${seed}: seconds per epoch after the first; headless Chromium, CPU module, in the package's worker, against the native CLI with RAYON_NUM_THREADS=1`,
    date: new Date().toISOString(),
    runs,
    native_epoch_s: out.native.map((x) => +x.epoch_s.toFixed(4)),
    wasm_epoch_s: out.wasm.map((x) => +x.epoch_s.toFixed(4)),
    median_epoch_s: { native: +n.toFixed(4), wasm: +w.toFixed(4) },
    wasm_over_native: +(w / n).toFixed(3),
    // Same seed, same data: the two builds' epoch losses agree to float rounding.
    last_loss: { native: out.native[0].losses.at(-1), wasm: out.wasm[0].losses.at(-1) },
    page_errors: errors.map(String),
    command: `node bench/train_wasm_vs_native.mjs --runs ${runs} --epochs ${epochs}`,
  };
  console.log(JSON.stringify(result, null, 1));
  writeFileSync(join(root, 'bench', 'results', 'train_wasm_vs_native.json'), `${JSON.stringify(result, null, 1)}\n`);
} finally {
  await browser.close();
  server.close();
}
