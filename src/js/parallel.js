// scNym prediction split across workers, each its own wasm instance (the CPU module), so a page
// predicts on several cores: the client's own worker aligns the data set to the model's genes once
// (prepareScnymInput), hands each helper worker a band of rows with their cells' totals (each
// worker rescales its own rows to ln(CPM+1), the costly part of preparing), predicts the first
// band itself, and joins the outputs in row order (finishScnymPrediction). Every row is rescaled
// and predicted on its own, so the result is the one-worker result, value for value.
import { fail } from './errors.js';

/** Below this many cells per worker a share costs more to hand out than it saves. */
export const MIN_CELLS_PER_WORKER = 2000;
/** Helper models kept per helper (bundles are re-sent for another model). */
const MODELS_KEPT = 2;

export class PredictionPool {
  /**
   * `openHelper()` → a started transport running the CPU module; `size`: the most workers a
   * prediction uses, the client's own included.
   */
  constructor(openHelper, size) {
    this.openHelper = openHelper;
    this.size = size;
    this.helpers = [];      // Promise<transport>, opened on first use
    this.models = new Map(); // model id → { bytes: Promise<Uint8Array>, in: Map<helper index, Promise<handle>> }
  }

  /** How many workers a prediction of `dataset` uses (1: not split). */
  workersFor(dataset) {
    if (dataset?.kind !== 'dataset') return 1; // an .h5ad streamed from its file stays in one worker
    return Math.max(1, Math.min(this.size, Math.floor(dataset.nObs / MIN_CELLS_PER_WORKER)));
  }

  /**
   * `primary.predictScnym(model, dataset, options)` on `n` workers. A helper that fails (its
   * worker crashed or could not start) is dropped and the prediction runs again in the client's
   * own worker; errors of the data or options are the client's own, and a cancel stops every share.
   */
  async predict(primary, model, dataset, options, controls = {}, n) {
    try {
      return await this.split(primary, model, dataset, options, controls, n);
    } catch (e) {
      if (!e?.helperFailed) throw e;
      return primary.call('predictScnym', [model, dataset, options], controls);
    }
  }

  async split(primary, model, dataset, options, { onProgress, signal } = {}, n) {
    // Every share stops when one fails, as when the caller cancels.
    const stop = new AbortController();
    const cancel = () => stop.abort();
    const run = { failed: null }; // the first helper failure, which the other shares' cancels hide
    signal?.addEventListener('abort', cancel, { once: true });
    if (signal?.aborted) cancel();
    const prepared = await primary.call('prepareScnymInput', [model, dataset, options], { signal: stop.signal });
    try {
      // Bands of whole batches, as one worker would batch them: the same rows meet in each batch,
      // so every value is the one-worker value exactly.
      const { nRows, batchSize } = prepared;
      const batches = Math.ceil(nRows / batchSize);
      const shares = Math.min(n, batches);
      const bands = Array.from({ length: shares }, (_, k) => [Math.floor((k * batches) / shares) * batchSize, Math.min(nRows, Math.floor(((k + 1) * batches) / shares) * batchSize)]);
      // The helpers' rows leave the primary worker before it starts on its own band: its
      // prediction holds its thread until done.
      const rows = [];
      for (const [start, end] of bands.slice(1)) rows.push(await primary.call('preparedRows', [prepared, start, end], { signal: stop.signal }));
      const latest = bands.map(() => null);
      const report = (k) => (p) => {
        latest[k] = p;
        const seen = latest.filter(Boolean);
        const sum = (key) => seen.reduce((s, q) => s + (q[key] ?? 0), 0);
        onProgress?.({ ...p, step: sum('step'), steps_per_epoch: sum('steps_per_epoch'), cells_done: sum('cells_done'), cells_total: nRows });
      };
      const stopOnFailure = (e) => { cancel(); throw e; };
      const outputs = await Promise.all(bands.map(([start, end], k) => (k === 0
        ? primary.call('predictPreparedRows', [model, prepared, start, end], { onProgress: report(0), signal: stop.signal })
        : this.onHelper(run, k - 1, primary, model, (helper, m) => {
          const r = rows[k - 1];
          const transfer = [r.indptr.buffer, r.indices.buffer, r.data.buffer, ...(r.totals ? [r.totals.buffer] : [])];
          return helper.call('predictScnymRows', [m, r, options], { onProgress: report(k), signal: stop.signal, transfer });
        })).catch(stopOnFailure)));
      // Labels come from the probabilities (the core's finish, in the primary worker); the
      // embeddings, the largest output, are joined here meanwhile rather than sent through that
      // worker and back: the primary's band comes as the whole array already
      // (predictPreparedRows), the helpers' rows go in.
      const finished = primary.call('finishScnymPrediction', [model, prepared, outputs.map(({ probabilities, executor }) => ({ probabilities, executor }))], {
        transfer: outputs.map((o) => o.probabilities.buffer),
      });
      const joined = outputs[0].embedding;
      if (joined) {
        const width = joined.length / nRows;
        outputs.slice(1).forEach(({ embedding }, k) => joined.set(embedding, bands[k + 1][0] * width));
      }
      const p = await finished;
      if (joined) p.X_scnym = joined;
      return p;
    } catch (e) {
      // A share stopped because another failed reports the failure, not a cancel.
      throw run.failed ?? e;
    } finally {
      signal?.removeEventListener('abort', cancel);
      primary.call('free', [prepared]).catch(() => {});
    }
  }

  /**
   * Runs `work(helper, model handle there)` on helper `i`, loading `model` there first if needed.
   * A helper that fails for any reason but a cancel is closed and forgotten (with the models sent
   * to it), and the error is marked `helperFailed`.
   */
  async onHelper(run, i, primary, model, work) {
    try {
      this.helpers[i] ??= this.openHelper();
      const helper = await this.helpers[i];
      let entry = this.models.get(model.id);
      if (!entry) {
        entry = { bytes: primary.call('saveModel', [model]), in: new Map() };
        this.models.set(model.id, entry);
        this.evict();
      }
      if (!entry.in.has(i)) entry.in.set(i, entry.bytes.then((bytes) => helper.call('loadModel', [bytes, {}])));
      return await work(helper, await entry.in.get(i));
    } catch (e) {
      if (e?.code === 'cancelled') throw e;
      this.drop(i);
      run.failed ??= Object.assign(fail(e?.code ?? 'worker_failed', `a prediction worker failed (${e?.message ?? e}); predicting in one worker instead`), { helperFailed: true });
      throw run.failed;
    }
  }

  /** Closes helper `i` and forgets the models it held. */
  drop(i) {
    const helper = this.helpers[i];
    this.helpers[i] = undefined;
    helper?.then((t) => t.close()).catch(() => {});
    for (const entry of this.models.values()) entry.in.delete(i);
  }

  /** Frees the helpers' copies of models beyond the latest MODELS_KEPT. */
  evict() {
    while (this.models.size > MODELS_KEPT) {
      const [id, entry] = this.models.entries().next().value;
      this.models.delete(id);
      for (const [i, handle] of entry.in) {
        Promise.all([this.helpers[i], handle]).then(([helper, h]) => helper?.call('free', [h])).catch(() => {});
      }
    }
  }

  close() {
    for (const h of this.helpers) h?.then((t) => t.close()).catch(() => {});
    this.helpers = [];
    this.models.clear();
  }
}
