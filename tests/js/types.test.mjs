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

// Real results against the published types (pkg/index.d.ts, whose option and report types are
// generated from the core's serde types, pkg/generated.d.ts): whole results of a holdout, a
// prediction (of a loaded data set and of an .h5ad read by blocks), an audit and an explanation,
// with progress events and a model's resolved config, are written as typed TypeScript literals
// (typed arrays as their constructors, long arrays shortened) and compiled with tsc. A key the
// core returns that the types lack, a declared key it does not return (or returns as undefined),
// or a value of another type fails.
test('real results type-check against the published types', async () => {
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
    results.prediction = ['ScnymPrediction', await sl.predictScnym(model, data, { normalize: true, unassigned_below: 0.2 })];
    const file = join(root, 'www', 'data', 'pbmc68k_reduced.h5ad');
    const { existsSync } = await import('node:fs');
    if (existsSync(file)) {
      const labelled = await sl.load(file);
      const m = await sl.trainScnym(labelled, null, { label_key: 'bulk_labels', use_raw: true, normalize: true, preset: 'no_ssl', config: { n_epochs: 1 } });
      results.streamed = ['ScnymPrediction', await sl.predictScnym(m, file, { use_raw: true, normalize: true, embedding: false })];
      results.explanation = ['Explanation', await sl.explainScnym(m, labelled, 'bulk_labels', { target: 'CD19+ B', n_samples: 4, n_cells: 5, use_raw: true, normalize: true })];
    }
    results.audit = ['AuditResult', await sl.audit(data, { hvg: null, train: { n_epochs: 3, seed: 1 } })];
  } finally {
    sl.close();
  }
  const dir = join(root, 'target', 'tmp', 'types-check');
  mkdirSync(dir, { recursive: true });
  const lines = [`import type * as T from '${join(root, 'pkg', 'index.js')}';`];
  for (const [name, [type, value]] of Object.entries(results)) {
    const typed = type.endsWith('[]') ? `T.${type.slice(0, -2)}[]` : `T.${type}`;
    lines.push(`export const ${name}: ${typed} = ${literal(value)};`);
  }
  writeFileSync(join(dir, 'results.ts'), lines.join('\n') + '\n');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    // Only these files: not every @types package the dev dependencies bring (`types: []`).
    const options = { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom'], types: [] };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: options, files: ['results.ts'] }));
    execFileSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8' });
  } catch (e) {
    assert.fail(`real results do not match pkg/index.d.ts (see ${join(dir, 'results.ts')}):\n${e.stdout}${e.stderr}`);
  }
});

/** A value as a TypeScript literal: typed arrays as `new Float32Array(0)`, at most 3 items of an array, undefined as a string (a type error). */
function literal(v) {
  if (v === undefined) return "'__undefined__'";
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : (Number.isNaN(v) ? 'NaN' : (v > 0 ? 'Infinity' : '-Infinity'));
  if (ArrayBuffer.isView(v)) return `new ${v.constructor.name}(0)`;
  if (Array.isArray(v)) return `[${v.slice(0, 3).map(literal).join(', ')}]`;
  return `{ ${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${literal(x)}`).join(', ')} }`;
}
