// scNym prediction split across workers in Chromium (src/js/parallel.js): with `predictWorkers: 3`
// a loaded data set is predicted by three wasm instances, and the result equals one worker's value
// for value (labels, probabilities, confidences, embedding); progress covers every cell; a
// cancel stops the run and the helpers still work afterwards; a helper whose worker dies is
// dropped and the prediction is done in one worker, with the same result.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../../scripts/serve.mjs';
import { launchChromium, openHarness } from './helpers.mjs';

let server, base, browser;
before(async () => {
  server = await startServer(0);
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await launchChromium({ webgpu: false });
});
after(async () => {
  await browser?.close();
  server?.close();
});

test('a prediction split across three workers equals one worker\'s, value for value', { timeout: 300_000 }, async () => {
  const { page, errors } = await openHarness(browser, base);
  const workers = [];
  page.on('worker', (w) => workers.push(w.url()));
  const got = await page.evaluate(async () => {
    const { open } = await import('sclabel');
    const one = await open({ backend: 'cpu', predictWorkers: 1 });
    const three = await open({ backend: 'cpu', predictWorkers: 3 });
    const result = {};
    for (const [name, sl] of [['one', one], ['three', three]]) {
      const data = await sl.synthetic({ nCells: 7000, nGenes: 120, nClasses: 4, seed: 3 });
      const train = await sl.subset(data, Array.from({ length: 1500 }, (_, i) => i));
      const model = await sl.trainScnym(train, null, { label_key: 'cell_type', normalize: true, config: { n_epochs: 2, seed: 1 } });
      const events = [];
      const p = await sl.predictScnym(model, data, { normalize: true, batch_size: 500, unassigned_below: 0.5 }, { onProgress: (e) => events.push(e) });
      result[name] = {
        labels: p.scNym, conf: Array.from(p.scNym_confidence), probs: Array.from(p.scNym_probabilities),
        emb: Array.from(p.X_scnym), predicted: Array.from(p.predicted), report: p.report, executor: p.executor,
        lastEvent: events.at(-1), events: events.length,
      };
      // Cancelled while the shares run: every worker's call stops, the client still works.
      const controller = new AbortController();
      const cancelled = sl.predictScnym(model, data, { normalize: true, batch_size: 100 }, { signal: controller.signal, onProgress: () => controller.abort() })
        .then(() => 'finished', (e) => e.code);
      result[name].cancelled = await cancelled;
      // After the cancel the helpers still predict: the same split prediction again.
      const again = await sl.predictScnym(model, data, { normalize: true, batch_size: 500, unassigned_below: 0.5 });
      result[name].again = Array.from(again.scNym_probabilities);
      result[name].small = (await sl.predictScnym(model, await sl.subset(data, [0, 1, 2]), { normalize: true })).scNym.length;
      if (sl.pool) {
        // A helper whose wasm traps: the prediction is done in one worker instead, and the next
        // split prediction opens a new helper in its place.
        await (await sl.pool.helpers[0]).call('__trapForTest', []).catch(() => {});
        result[name].afterCrash = Array.from((await sl.predictScnym(model, data, { normalize: true, batch_size: 500, unassigned_below: 0.5 })).scNym_probabilities);
        result[name].helperDropped = sl.pool.helpers[0] === undefined;
        result[name].reopened = Array.from((await sl.predictScnym(model, data, { normalize: true, batch_size: 500, unassigned_below: 0.5 })).scNym_probabilities);
      }
    }
    one.close();
    three.close();
    return result;
  });
  // One client worker each, two helpers for the split prediction, and one opened after a crash.
  assert.equal(workers.length, 5, workers.join(', '));
  const { one, three } = got;
  assert.deepEqual(three.labels, one.labels);
  assert.deepEqual(three.predicted, one.predicted);
  assert.deepEqual(three.probs, one.probs);
  assert.deepEqual(three.conf, one.conf);
  assert.deepEqual(three.emb, one.emb);
  assert.deepEqual(three.report, one.report);
  assert.equal(three.executor, one.executor);
  assert.ok(one.labels.includes('Unassigned'), 'the threshold applied to the joined prediction');
  assert.equal(three.lastEvent.cells_done, 7000);
  assert.equal(three.lastEvent.cells_total, 7000);
  assert.ok(three.events >= 3, `${three.events} progress events`);
  assert.equal(three.cancelled, 'cancelled');
  assert.equal(one.cancelled, 'cancelled');
  assert.deepEqual(three.again, one.probs);
  assert.ok(three.helperDropped, 'the crashed helper is dropped');
  assert.deepEqual(three.afterCrash, one.probs);
  assert.deepEqual(three.reopened, one.probs);
  assert.equal(three.small, 3);
  assert.deepEqual(errors, []);
  await page.close();
});
