// A trap of the wasm module inside an async task (what a lost GPU device or a failed allocation
// does) reaches the caller as a `crashed` error naming the operation — never an uncaught
// RuntimeError or a dead Node process — and every later call says the module crashed. Run in a
// child Node process: node:test's own uncaughtException handler would see the trap too, and a
// trapped module stays unusable for the rest of its process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { root } from './helpers.mjs';

const script = `
import { open } from 'sclabel';
const sl = await open({ backend: 'cpu' });
const out = {};
try { await sl.transport.call('__trapForTest', []); } catch (e) { out.first = { code: e.code, message: e.message }; }
try { await sl.synthetic({ nCells: 10, nGenes: 5, nClasses: 2 }); } catch (e) { out.later = { code: e.code, message: e.message }; }
out.listeners = process.listenerCount('uncaughtException');
console.log(JSON.stringify(out));
`;

test('a trap in an async task is a crashed error, and the process lives on', () => {
  const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  const out = JSON.parse(stdout.trim().split('\n').pop());
  assert.equal(out.first?.code, 'crashed', stdout);
  assert.match(out.first.message, /crashed in __trapForTest.*unreachable/s);
  assert.match(out.first.message, /restart the process/);
  assert.equal(out.later?.code, 'crashed');
  assert.match(out.later.message, /earlier crash/);
  // The listener is gone once nothing is in flight: the host's own handling is untouched.
  assert.equal(out.listeners, 0);
});

test('past the memory limit, work is refused with too_large, saying what and what to do', () => {
  // tests/h5ad_large.rs's 200k-cell file (8M stored values: 66 MB loaded) against a 40 MB limit:
  // refused before it is read; the same client then makes a small data set.
  const script = `
import { open } from 'sclabel';
const sl = await open({ backend: 'cpu', memoryLimit: 40 * 2 ** 20 });
const out = {};
try { await sl.load('target/tmp/synthetic_200k.h5ad'); } catch (e) { out.error = { code: e.code, message: e.message }; }
out.small = (await sl.synthetic({ nCells: 10, nGenes: 5, nClasses: 2 })).nObs;
console.log(JSON.stringify(out));
`;
  const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  const out = JSON.parse(stdout.trim().split('\n').pop());
  assert.equal(out.error?.code, 'too_large', stdout);
  assert.match(out.error.message, /synthetic_200k\.h5ad.*8000000 stored values.*predictScnym takes the file itself/s);
  assert.equal(out.small, 10);
});
