// The Web Worker that owns the wasm module and the GPU device, so the page never blocks. Protocol
// (all messages carry the call's `id`): in { type: 'call', op, args } / { type: 'abort' };
// out { type: 'progress', progress } / { type: 'result', result } / { type: 'error', error }.
import { Engine } from './engine.js';
import { fail } from './errors.js';

let engine = null;
let crashed = null;
const controllers = new Map();

/** A wasm trap while starting leaves the module unusable: say so on every later call. (Traps
 * during calls are turned into `crashed` errors by the engine.) */
const isTrap = (e) => e instanceof WebAssembly.RuntimeError;

self.onmessage = async ({ data }) => {
  const { id, type, op, args } = data;
  if (type === 'abort') {
    controllers.get(id)?.abort();
    return;
  }
  const controller = new AbortController();
  controllers.set(id, controller);
  try {
    if (crashed) throw fail('crashed', `the sclabel worker stopped working earlier (${crashed}); open a new client`);
    let out;
    if (op === 'open') {
      engine = await Engine.create(args[0]);
      out = { result: engine.backend, transfer: [] };
    } else {
      if (!engine) throw fail('invalid_option', 'the worker has no engine yet');
      const onProgress = (progress) => self.postMessage({ id, type: 'progress', progress });
      out = await engine.call(op, args, { onProgress, signal: controller.signal });
    }
    self.postMessage({ id, type: 'result', result: out.result }, out.transfer);
  } catch (e) {
    if (isTrap(e)) crashed = e.message;
    const code = isTrap(e) ? 'crashed' : e?.code ?? 'internal';
    const message = isTrap(e) ? `sclabel crashed in ${op} (${e.message}); a lost GPU device does this — open a new client, with backend 'cpu' if it persists` : e?.message ?? String(e);
    self.postMessage({ id, type: 'error', error: { message, code, details: isTrap(e) ? undefined : e?.details } });
  } finally {
    controllers.delete(id);
  }
};
