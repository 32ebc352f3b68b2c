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
