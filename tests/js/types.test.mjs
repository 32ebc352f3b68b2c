// The package's TypeScript types: a typical usage file must type-check against pkg/index.d.ts
// (resolved through package.json "exports", as a user's project resolves it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { root } from './helpers.mjs';

test('usage.ts type-checks against the published types', () => {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tests', 'js', 'tsconfig.json')], { encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc reported errors:\n${e.stdout}${e.stderr}`);
  }
});

test('error codes: one list, from the core, used by the JS layer and index.d.ts', async () => {
  const { readFileSync, readdirSync } = await import('node:fs');
  const { default: init, errorCodes } = await import('../../pkg/sclabel_wasm.js');
  await init({ module_or_path: readFileSync(join(root, 'pkg', 'sclabel_wasm_bg.wasm')) });
  const codes = new Set(errorCodes().map(([code]) => code));
  assert.ok(codes.has('invalid_file') && codes.has('crashed'), [...codes].join(', '));
  // Every code the JS layer raises (fail('…') and the worker's fallback) is in the list.
  const jsDir = join(root, 'src', 'js');
  for (const file of readdirSync(jsDir).filter((f) => f.endsWith('.js'))) {
    const text = readFileSync(join(jsDir, file), 'utf8');
    for (const [, code] of text.matchAll(/fail\('([a-z_]+)'/g)) assert.ok(codes.has(code), `${file} raises '${code}', which errorCodes() lacks`);
  }
  // index.d.ts's union is exactly the list.
  const dts = readFileSync(join(jsDir, 'index.d.ts'), 'utf8');
  const union = /export interface SclabelError extends Error \{\s*code:([^;]+);/.exec(dts);
  assert.ok(union, 'SclabelError.code not found in index.d.ts');
  const typed = new Set([...union[1].matchAll(/'([a-z_]+)'/g)].map((m) => m[1]));
  assert.deepEqual([...typed].sort(), [...codes].sort());
});

// Real results against the types generated from the core's serde types (pkg/generated.d.ts):
// the serde parts of a holdout report, progress events, a model's resolved config, a prediction
// and an audit are written as typed object literals and compiled with tsc. A key the core returns
// that the types lack, a declared key it does not return (or returns as undefined), or a value
// of another type fails.
test('real results type-check against the generated types', async () => {
  const { writeFileSync, mkdirSync } = await import('node:fs');
  const { open } = await import('sclabel');
  const sl = await open({ backend: 'cpu' });
  const results = {};
  try {
    const data = await sl.synthetic({ nCells: 300, nGenes: 60, nClasses: 3, seed: 2 });
    const progress = [];
    results.holdout = ['HoldoutReport', await sl.trainHoldout(data, { train: { n_epochs: 2, seed: 1 } }, { onProgress: (p) => progress.push(p) })];
    results.progress = ['Progress[]', progress.slice(0, 4)];
    const model = await sl.trainScnym(data, null, { preset: 'no_ssl', normalize: true, config: { n_epochs: 1 } });
    results.config = ['ScnymConfig', model.info.config];
    const p = await sl.predictScnym(model, data, { normalize: true, unassigned_below: 0.2 });
    results.predictReport = ['PredictReport', p.report];
    results.predictOptions = ['PredictOptions', p.options];
    results.predictExecutor = ['Executor', p.executor];
    results.backend = ['BackendInfo', p.backend];
    const a = await sl.audit(data, { hvg: null, train: { n_epochs: 3, seed: 1 }, gene_scores: null });
    results.auditOptions = ['AuditOptions', a.options];
    results.auditNormalization = ['NormalizationReport', a.normalization];
    results.auditCutoffs = ['Cutoffs', a.cutoffs];
    results.auditCategories = ['Category[]', a.category];
    results.auditHistory = ['EpochStats[]', a.history];
  } finally {
    sl.close();
  }
  const dir = join(root, 'target', 'tmp', 'types-check');
  mkdirSync(dir, { recursive: true });
  const lines = [`import type * as T from '${join(root, 'pkg', 'generated.js')}';`];
  for (const [name, [type, value]] of Object.entries(results)) {
    const typed = type.endsWith('[]') ? `T.${type.slice(0, -2)}[]` : `T.${type}`;
    lines.push(`export const ${name}: ${typed} = ${JSON.stringify(value, (k, v) => (v === undefined ? '__undefined__' : v))};`);
  }
  writeFileSync(join(dir, 'results.ts'), lines.join('\n') + '\n');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    execFileSync(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', join(dir, 'results.ts')], { encoding: 'utf8' });
  } catch (e) {
    assert.fail(`real results do not match pkg/generated.d.ts:\n${e.stdout}${e.stderr}`);
  }
});
