// The demo viewer: built only on sclabel's public JS API, as a host application would use it.
// Flow: load a reference and a query (the bundled demo pair, or the user's files) → trainScnym →
// predictScnym on both (scNym, scNym_confidence, X_scnym) → audit the reference labels → views, exports.
// With an atlas from the registry (data/atlases.json) as the reference: its pretrained model labels
// the query at once, or is fine-tuned on the atlas + query (fineTuneAtlas) before predicting.
import { open, loadRegistry, predictionAdditions, toCsv, toCellxgeneAnnotations, toCellBrowserMeta, toVitessceCellSets } from 'sclabel';
import { EmbeddingView } from './views/embedding.js';
import * as charts from './views/charts.js';
import { esc } from './views/charts.js';
import { download, svgToPng, imageDataToPng } from './views/export.js';

const $ = (id) => document.getElementById(id);

// The demo pair, fetched from the page's own server (setup extracts them from PyPI wheels).
const DEMO = {
  reference: { source: 'data/pbmc68k_reduced.h5ad', name: 'pbmc68k_reduced.h5ad', raw: true, labelKey: 'bulk_labels' },
  query: { source: 'data/pbmc3k_counts.h5ad', name: 'pbmc3k_counts.h5ad', raw: false },
};
const LABEL_GUESSES = ['bulk_labels', 'cell_type', 'celltype', 'cell_ontology_class', 'labels', 'louvain', 'leiden'];

const app = {
  engine: null,      // { requested, client: Promise<Sclabel> }: one client (worker) per backend choice
  inputs: { reference: null, query: null }, // { source, name } chosen by the user (own data)
  inputsVersion: 0,  // bumped on every new choice of file
  loading: null,     // { key, promise of { client, reference, query }, controller } for the current choices
  loaded: null,      // the last finished load
  controller: null,
  result: null,      // everything the views show (set by run())
  plots: {},         // id → SVG text as drawn, for the exports
  embedding: null,
  projectionWorker: null,
  registry: null,    // the atlases the page lists (loadRegistry), or null when it has none
};

/** The client for the chosen backend; a new choice closes the old worker and its data. */
function client() {
  const requested = $('backend').value;
  if (app.engine?.requested !== requested) {
    const old = app.engine;
    const engine = { requested, client: open({ backend: requested }) };
    app.engine = engine;
    clearResults(); // they live in the old worker, which closes with their data sets and model
    old?.client.then((c) => c.close(), () => {});
    engine.client.then((c) => { if (app.engine === engine) showBackend(c.backend); }, (e) => { if (app.engine === engine) showError(e); });
  }
  return app.engine.client;
}

function clearResults() {
  app.result = null;
  app.plots = {};
  app.projectionWorker?.terminate();
  app.projectionWorker = null;
  $('results').hidden = true;
}

/** Frees engine objects nothing shows or will use any more (wasm memory is finite: 4 GB at most). */
function release(c, handles) {
  const kept = new Set([app.result?.reference, app.result?.query, app.result?.model, app.result?.labelled, app.loaded?.reference, app.loaded?.query, app.loaded?.atlas?.model]);
  for (const h of handles) if (h && !kept.has(h)) c.free(h).catch(() => {});
}

/** Errors of work a newer choice replaced are not the user's concern. */
const reportUnlessReplaced = (e) => { if (e?.code !== 'replaced') showError(e); };

function showBackend(info) {
  const badge = $('backend-badge');
  badge.textContent = `backend: ${info.backend}${info.adapter ? ` (${info.adapter})` : ''}`;
  badge.title = info.reason;
  badge.className = `badge ${info.backend === 'webgpu' ? 'gpu' : 'cpu'}`;
  badge.dataset.backend = info.backend;
}

function showError(e) {
  if (e) console.error(e);
  $('error').textContent = e ? `${e.code ? `[${e.code}] ` : ''}${e.message ?? e}` : '';
}

/** What to load: the demo pair, or the user's query with their reference (else the demo's). */
const sources = () => (document.querySelector('input[name=source]:checked').value === 'demo'
  ? DEMO
  : { reference: app.inputs.reference ?? DEMO.reference, query: app.inputs.query });

/**
 * The loaded reference and query for the current choices (backend, demo or own, files): loaded once
 * per choice, so a run started while a load is under way waits for that load instead of repeating it.
 */
function ensureData() {
  const key = `${$('backend').value}|${document.querySelector('input[name=source]:checked').value}|${app.inputsVersion}|${$('atlas').value}`;
  if (app.loading?.key !== key) {
    app.loading?.controller.abort(); // a replaced load stops reading
    const controller = new AbortController();
    // The choices are read now, with the key: a load must not pick up a later change of source
    // (e.g. "own data" chosen while the demo pair's worker starts) before it is replaced.
    const promise = loadData(key, { ...sources() }, controller.signal);
    app.loading = { key, promise, controller };
    promise.catch(() => { if (app.loading?.promise === promise) app.loading = null; });
  }
  return app.loading.promise;
}

/** Above this size a query .h5ad or zipped AnnData-Zarr is loaded with only the reference's genes (of X and of .raw). */
const BIG_QUERY_BYTES = 256 * 2 ** 20;

async function loadData(key, chosen, signal) {
  delete document.body.dataset.loaded;
  const c = await client();
  if (!chosen.query) throw Object.assign(new Error('choose a query data set first (a reference is optional)'), { code: 'invalid_option' });
  const stale = () => app.loading?.key !== key;
  const replaced = () => Object.assign(new Error('replaced by a newer choice'), { code: 'replaced' });
  setStatus('loading the reference and the query…', 0);
  const onProgress = (p) => { if (!stale()) setStatus(`loading… ${(p.done / 2 ** 20).toFixed(1)} of ${(p.total / 2 ** 20).toFixed(1)} MiB`, p.done / (p.total || 1)); };
  const load = (s) => c.load(typeof s.source === 'string' ? new URL(s.source, location.href) : s.source, { name: s.name, onProgress, signal });
  const entry = app.registry?.atlases[$('atlas').value];
  let reference, query, atlas;
  try {
    if (entry) {
      // The atlas's files are checked against its manifest and cached; its reference is ln(CPM+1).
      atlas = await c.openAtlas(entry);
      reference = atlas.reference;
      chosen.reference = { labelKey: atlas.manifest.label_key, raw: false };
    } else {
      reference = await load(chosen.reference);
    }
    // A big query keeps only the reference's genes (an .h5ad read a block of cells at a time, a
    // Zarr zip a chunk at a time; normalisation still sees whole cells), so a 100k-cell all-gene
    // file fits the page.
    const big = chosen.query.source?.size > BIG_QUERY_BYTES && /\.(h5ad|zip)$/i.test(chosen.query.name ?? chosen.query.source.name ?? '');
    query = big
      ? await c.load(chosen.query.source, { name: chosen.query.name, onProgress, signal, genes: await c.varNames(reference) })
      : await load(chosen.query);
  } catch (e) {
    release(c, [reference, atlas?.model]);
    throw stale() ? replaced() : e;
  }
  if (stale()) {
    release(c, [reference, query, atlas?.model]);
    throw replaced();
  }
  const previous = app.loaded;
  app.loaded = { client: c, reference, query, atlas };
  if (previous?.client === c) release(c, [previous.reference, previous.query, previous.atlas?.model]);
  $('atlas-info').textContent = atlas ? atlasLine(atlas.manifest) : '';
  fillColumns(chosen, app.loaded);
  setStatus('ready', 0);
  document.body.dataset.loaded = key;
  return app.loaded;
}

function fillColumns(chosen, { reference, query }) {
  const cats = (h) => h.summary.obs.filter((c) => c.kind === 'categorical' || c.kind === 'string').map((c) => c.name);
  const refCats = cats(reference), queryCats = cats(query);
  $('label-key').replaceChildren(...refCats.map((n) => new Option(n, n)));
  const guess = chosen.reference.labelKey ?? LABEL_GUESSES.find((k) => refCats.includes(k));
  if (guess) $('label-key').value = guess;
  $('domain-key').replaceChildren(new Option('— reference vs query —', ''), ...refCats.map((n) => new Option(n, n)));
  $('query-label-key').replaceChildren(new Option('— none —', ''), ...queryCats.map((n) => new Option(n, n)));
  $('ref-raw').checked = chosen.reference.raw ?? (reference.summary.has_raw && isScaled(reference));
  $('query-raw').checked = chosen.query.raw ?? (query.summary.has_raw && isScaled(query));
  const line = (h, role) => `${role}: ${h.nObs.toLocaleString()} cells × ${h.nVars.toLocaleString()} genes${h.summary.has_raw ? ' (+ .raw)' : ''}`;
  $('data-summary').textContent = `${line(reference, 'reference')}; ${line(query, 'query')}`;
}

const atlasLine = (m) => `${m.name ?? m.id}: ${m.n_cells.toLocaleString()} cells × ${m.n_genes.toLocaleString()} genes, `
  + `${m.classes.length} classes${m.license ? `; data licence: ${m.license}` : ''}`;

/** X holding negative values (scaled / z-scored) is no input for scNym; .raw then is. */
const isScaled = (h) => (h.summary.normalization?.min ?? 0) < 0;

// ---- progress ------------------------------------------------------------------------------

// Shares of the whole run per step, for one bar across training, prediction and the audit.
const STEPS = { train: [0, 0.65], predict: [0.65, 0.69], predictRef: [0.69, 0.72], celltypist: [0.72, 0.74], audit: [0.74, 1] };
let stepStart = 0;

function setStatus(text, fraction) {
  $('progress-text').textContent = text;
  $('progress').value = fraction;
}

function stepProgress(step, label) {
  stepStart = performance.now();
  const [a, b] = STEPS[step];
  setStatus(label, a);
  $('eta').textContent = '';
  return (p) => {
    // Training: by epochs and steps (the audit trains several networks, each reporting its own epochs).
    const f = p.phase === 'train'
      ? Math.min(1, (p.epoch + (p.step + 1) / (p.steps_per_epoch || 1)) / (p.n_epochs || 1))
      : (p.cells_total ? Math.min(1, p.cells_done / p.cells_total) : 0);
    const detail = p.phase === 'train'
      ? `epoch ${p.epoch + 1}/${p.n_epochs}${p.loss != null ? ` · loss ${p.loss.toFixed(3)}` : ''}`
      : `${p.cells_done.toLocaleString()} / ${p.cells_total.toLocaleString()} cells`;
    setStatus(`${label}: ${detail}`, a + (b - a) * f);
    const elapsed = (performance.now() - stepStart) / 1000;
    if (f > 0.02) $('eta').textContent = `ETA ${formatSeconds((elapsed * (1 - f)) / f)} for this step`;
  };
}

const formatSeconds = (s) => (s < 60 ? `${Math.ceil(s)} s` : `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`);

// ---- the run -------------------------------------------------------------------------------

/** A JSON options box: empty = null; a typo is an error naming the box. */
function readJson(id, what) {
  const text = $(id).value.trim();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw Object.assign(new Error(`${what} is not valid JSON: ${e.message}`), { code: 'invalid_option' });
  }
}

async function run() {
  showError(null);
  app.controller = new AbortController();
  const signal = app.controller.signal;
  setBusy(true);
  let model = null, client_ = null;
  try {
    const { client: c, reference, query, atlas } = await ensureData();
    client_ = c;
    // Every choice is read now: the controls are locked during the run, and a typo fails at once.
    const o = {
      labelKey: $('label-key').value, domainKey: $('domain-key').value || null, queryLabelKey: $('query-label-key').value || null,
      refRaw: $('ref-raw').checked, queryRaw: $('query-raw').checked, unassignedBelow: Number($('unassigned').value),
      preset: $('preset').value, config: readJson('config', 'the scNym config'),
      audit: $('do-audit').checked ? readJson('audit-config', 'the Annotatability options') ?? {} : null,
      atlasMode: atlas ? $('atlas-mode').value : null,
      celltypist: celltypistSource(), celltypistVoting: $('celltypist-voting').checked,
    };
    const started = performance.now();
    if (o.atlasMode === 'instant') {
      model = atlas.model;
    } else if (atlas) {
      model = await c.fineTuneAtlas(atlas, query, { normalize: true, use_raw: o.queryRaw, preset: o.preset, config: o.config },
        { signal, onProgress: stepProgress('train', `fine-tuning the atlas model on ${atlas.manifest.id} + the query`) });
    } else {
      model = await c.trainScnym(reference, query, {
        label_key: o.labelKey, domain_key: o.domainKey, preset: o.preset,
        config: o.config, normalize: true, use_raw: o.refRaw, query_use_raw: o.queryRaw,
      }, { signal, onProgress: stepProgress('train', 'training scNym') });
    }
    const predictOptions = { normalize: true, unassigned_below: o.unassignedBelow, embedding: true };
    const prediction = await c.predictScnym(model, query, { ...predictOptions, use_raw: o.queryRaw },
      { signal, onProgress: stepProgress('predict', 'labelling the query') });
    const refPrediction = await c.predictScnym(model, reference, { ...predictOptions, use_raw: o.refRaw, normalize: !atlas },
      { signal, onProgress: stepProgress('predictRef', 'placing the reference in the embedding') });
    // CellTypist beside scNym: its model labels the query at once (no training).
    let celltypist = null;
    if (o.celltypist) {
      const onProgress = stepProgress('celltypist', `annotating with CellTypist (${o.celltypist.name})`);
      const ct = await c.loadCelltypist(o.celltypist.source);
      try {
        const p = await c.predictCelltypist(ct, query, { use_raw: o.queryRaw, majority_voting: o.celltypistVoting }, { signal, onProgress });
        celltypist = { name: o.celltypist.name, info: ct.info, prediction: p };
      } finally {
        c.free(ct).catch(() => {});
      }
    }
    const audit = o.audit && await c.audit(reference, { ...o.audit, label_key: o.labelKey, use_raw: o.refRaw },
      { signal, onProgress: stepProgress('audit', 'auditing the reference labels (Annotatability)') });
    const previous = app.result;
    app.result = {
      ...o, client: c, reference, query, model, prediction, refPrediction, audit, celltypist, atlas: atlas?.manifest ?? null,
      refLabels: await c.obs(reference, o.labelKey),
      queryLabels: o.queryLabelKey ? await c.obs(query, o.queryLabelKey) : null,
      queryNames: await c.obsNames(query), refNames: await c.obsNames(reference),
      seconds: (performance.now() - started) / 1000,
    };
    if (previous?.client === c) release(c, [previous.model, previous.labelled, previous.reference, previous.query]); // an atlas model stays (kept)
    setStatus(`done in ${formatSeconds(app.result.seconds)}`, 1);
    $('eta').textContent = '';
    await showResults();
    document.body.dataset.state = 'done';
  } catch (e) {
    if (model && app.result?.model !== model) release(client_, [model]);
    document.body.dataset.state = e.code === 'cancelled' ? 'cancelled' : 'failed';
    setStatus(e.code === 'cancelled' ? 'cancelled' : 'failed', 0);
    $('eta').textContent = '';
    if (e.code !== 'cancelled') reportUnlessReplaced(e);
  } finally {
    setBusy(false);
  }
}

/** While a run goes, every control that would change its inputs is locked; Cancel is not. */
function setBusy(busy) {
  document.body.dataset.state = busy ? 'running' : document.body.dataset.state;
  for (const el of document.querySelectorAll('#data input, #data select, #data textarea, #data button, #backend, #explain')) el.disabled = busy;
  $('cancel').disabled = !busy;
  $('atlas-mode').disabled ||= !$('atlas').value;
  updateExportButtons(busy);
}

function updateExportButtons(busy = document.body.dataset.state === 'running') {
  const r = app.result;
  for (const b of document.querySelectorAll('#exports-card button, [data-export]')) b.disabled = busy || !r;
  if (!r) return;
  const h5ad = r.query.format === 'h5ad';
  $('export-h5ad').disabled ||= !h5ad;
  $('export-h5ad').title = h5ad ? 'the query file with obs scNym, scNym_confidence and obsm X_scnym added' : 'the query was read from AnnData-Zarr: export the CSV instead';
  $('export-audit').disabled ||= !r.audit;
}

// ---- views ---------------------------------------------------------------------------------

async function showResults() {
  const r = app.result;
  const { prediction: p } = r;
  const unassigned = p.scNym.filter((l) => l === 'Unassigned').length;
  const how = r.atlas ? ` by atlas <b>${esc(r.atlas.id)}</b> (${r.atlasMode === 'instant' ? 'instant annotation' : 'fine-tuned'})` : '';
  $('summary').innerHTML = `Labelled <b>${p.cells.toLocaleString()}</b> query cells${how} with ${p.classes.length} reference classes`
    + ` (${unassigned.toLocaleString()} Unassigned below ${r.unassignedBelow}); genes shared: ${p.report.overlap.shared.toLocaleString()}`
    + ` of the model's ${p.report.overlap.model_genes.toLocaleString()}; ran on <b>${esc(p.backend.backend)}</b>.`
    + (p.report.warnings.length ? ` <span class="warn">${p.report.warnings.map(esc).join(' ')}</span>` : '');
  $('results').hidden = false;
  updateExportButtons();
  fillColorBy();
  drawConfidence();
  drawConfusion();
  drawCelltypist();
  drawDataMap();
  drawTrainability();
  drawLowConfidence();
  $('explain-class').replaceChildren(...p.classes.map((n) => new Option(n, n)));
  const counts = new Array(p.classes.length).fill(0);
  for (const k of p.predicted) counts[k]++;
  $('explain-class').value = p.classes[counts.indexOf(Math.max(...counts))];
  await showEmbedding();
  await explain();
}


function fillColorBy() {
  const r = app.result;
  const options = [['predicted', 'predicted label (scNym)'], ['confidence', 'confidence'], ['dataset', 'data set'],
    ['reference-label', `reference label (${r.labelKey})`]];
  if (r.domainKey) options.push(['domain', `domain (${r.domainKey})`]);
  if (r.queryLabels) options.push(['query-label', `query label (${r.queryLabelKey})`]);
  if (r.audit) options.push(['audit', 'Annotatability category (reference)']);
  if (r.celltypist) options.push(['celltypist', `CellTypist (${r.celltypist.name})`]);
  // Any other obs column of either data set (cells of the other one are grey).
  const columns = new Map();
  for (const c of [...r.reference.summary.obs, ...r.query.summary.obs]) columns.set(c.name, c.kind);
  for (const [name, kind] of columns) options.push([`obs:${name}`, `obs: ${name}${kind === 'numeric' ? ' (numeric)' : ''}`]);
  $('color-by').replaceChildren(...options.map(([v, t]) => new Option(t, v)));
}

/** Categorical colour from per-cell strings (null = missing); `order` fixes the colours of known names (the class order, as in the other plots). */
function categorical(values, order = []) {
  const counts = new Map();
  for (const v of values) if (v != null) counts.set(v, (counts.get(v) ?? 0) + 1);
  let names = [...order, ...[...counts.keys()].filter((n) => !order.includes(n)).sort()];
  // A column of (nearly) unique values (barcodes …) would need a colour and a legend row per cell:
  // the most frequent categories keep theirs, the rest share one.
  const MAX = 30;
  if (names.length > MAX) {
    const top = new Set(names.filter((n) => counts.has(n)).sort((a, b) => counts.get(b) - counts.get(a)).slice(0, MAX - 1));
    const rest = names.length - top.size;
    names = [...names.filter((n) => top.has(n)), `other (${rest.toLocaleString()} categories)`];
  }
  const index = new Map(names.map((n, k) => [n, k]));
  const other = names.length - 1;
  return { kind: 'categorical', names, codes: Int32Array.from(values, (v) => (v == null ? -1 : index.get(v) ?? other)) };
}

async function colorFor(key) {
  const r = app.result, nRef = r.refNames.length, nQuery = r.queryNames.length;
  const both = (refValues, queryValues) => [...refValues, ...queryValues];
  switch (key) {
    case 'predicted': return categorical(both(r.refPrediction.scNym, r.prediction.scNym), [...r.prediction.classes, 'Unassigned']);
    case 'celltypist': return categorical(both(new Array(nRef).fill(null), r.celltypist.prediction.labels), r.celltypist.prediction.classes);
    case 'reference-label': return categorical(both(r.refLabels, new Array(nQuery).fill(null)), r.prediction.classes);
    case 'confidence': {
      const values = Float32Array.from(both(r.refPrediction.scNym_confidence, r.prediction.scNym_confidence));
      return { kind: 'continuous', values, min: values.reduce((a, b) => Math.min(a, b), 1), max: 1, name: 'scNym confidence' };
    }
    case 'dataset': return categorical(both(new Array(nRef).fill('reference'), new Array(nQuery).fill('query')));
    case 'query-label': return categorical(both(new Array(nRef).fill(null), r.queryLabels), r.prediction.classes);
    case 'domain': {
      const k = r.domainKey;
      const queryDomain = r.query.summary.obs.some((c) => c.name === k) ? await r.client.obs(r.query, k) : new Array(nQuery).fill('query');
      return categorical(both(await r.client.obs(r.reference, k), queryDomain));
    }
    case 'audit': {
      const values = new Array(nRef + nQuery).fill(null);
      r.audit.cells.forEach((row, i) => { values[row] = r.audit.category[i]; });
      return categorical(values);
    }
    default: {
      const name = key.replace(/^obs:/, '');
      const of = async (h, n) => (h.summary.obs.some((c) => c.name === name) ? r.client.obs(h, name) : new Array(n).fill(null));
      const values = both(await of(r.reference, nRef), await of(r.query, nQuery));
      const numeric = [r.reference, r.query].some((h) => h.summary.obs.find((c) => c.name === name)?.kind === 'numeric');
      if (!numeric) return categorical(values.map((v) => (v == null ? null : String(v))));
      const x = Float32Array.from(values, (v) => (v == null || v === '' ? NaN : Number(v)));
      const finite = x.filter(Number.isFinite);
      const [min, max] = finite.length ? [finite.reduce((a, b) => Math.min(a, b)), finite.reduce((a, b) => Math.max(a, b))] : [0, 1];
      return { kind: 'continuous', values: x, min, max, name };
    }
  }
}

/** Colours the scatter by the chosen value; `data-color-by` says when it is drawn. */
async function recolor() {
  const key = $('color-by').value;
  delete $('embedding').dataset.colorBy;
  const color = await colorFor(key);
  if ($('color-by').value !== key) return; // a newer choice is being drawn
  await app.embedding.setColor(color);
  $('embedding').dataset.colorBy = key;
}

function describeCell(i) {
  const r = app.result, nRef = r.refNames.length;
  const [set, row, pred] = i < nRef ? ['reference', i, r.refPrediction] : ['query', i - nRef, r.prediction];
  const name = (set === 'reference' ? r.refNames : r.queryNames)[row];
  const c = app.embedding.color;
  const value = c.kind === 'categorical' ? (c.codes[i] < 0 ? '—' : c.names[c.codes[i]]) : (Number.isFinite(c.values[i]) ? c.values[i].toPrecision(4) : '—');
  return `<b>${esc(name)}</b> <small>${set}</small><br>scNym: ${esc(pred.scNym[row])} (${pred.scNym_confidence[row].toFixed(3)})`
    + (set === 'reference' ? `<br>${esc(r.labelKey)}: ${esc(r.refLabels[row] ?? '—')}` : '')
    + `<br>${esc($('color-by').selectedOptions[0].text)}: ${esc(value)}`;
}

async function showEmbedding() {
  const r = app.result;
  app.embedding ??= new EmbeddingView($('embedding'), describeCell);
  const d = r.prediction.embeddingDim, n = r.refNames.length + r.queryNames.length; // reference rows first
  const x = new Float32Array(n * d);
  x.set(r.refPrediction.X_scnym);
  x.set(r.prediction.X_scnym, r.refPrediction.X_scnym.length);
  r.refPrediction.X_scnym = null; // copied; the query's stays for the h5ad export
  app.projectionWorker?.terminate();
  app.embedding.clear();
  delete $('embedding').dataset.projection;
  await recolor();
  const worker = new Worker(new URL('./projection-worker.js', import.meta.url), { type: 'module' });
  app.projectionWorker = worker;
  $('projection-status').textContent = 'projecting (PCA, then UMAP)…';
  await new Promise((resolve) => {
    worker.onmessage = async ({ data }) => {
      if (app.projectionWorker !== worker) return resolve(); // an older run's projection
      const shown = data.rows ? `${data.rows.length.toLocaleString()} of ${n.toLocaleString()} cells, a seeded random sample; every cell is labelled and exported` : `${n.toLocaleString()} cells`;
      if (data.kind === 'pca') {
        await app.embedding.setPositions(data.xy, data.rows);
        $('embedding').dataset.cells = String(n);
        $('embedding').dataset.projection = 'pca';
        $('projection-status').textContent = `PCA shown (${shown}); UMAP running…`;
        resolve();
      } else if (data.kind === 'progress') {
        $('projection-status').textContent = `PCA shown; UMAP epoch ${data.epoch}/${data.nEpochs}…`;
      } else if (data.kind === 'umap') {
        await app.embedding.setPositions(data.xy, data.rows);
        if (app.projectionWorker !== worker) return;
        $('embedding').dataset.projection = 'umap';
        $('projection-status').textContent = `UMAP of X_scnym (${shown})`;
        worker.terminate();
      } else {
        $('projection-status').textContent = `projection failed: ${data.message}`;
        resolve();
      }
    };
    worker.onerror = (e) => { $('projection-status').textContent = `projection failed: ${e.message}`; resolve(); };
    // ?embeddingCells=N draws a sample of N cells from smaller data too (tests, slow machines).
    const maxCells = Number(new URLSearchParams(location.search).get('embeddingCells')) || undefined;
    worker.postMessage({ embedding: x, n, d, seed: 0, maxCells }, [x.buffer]);
  });
}

function show(id, svgText) {
  app.plots[id] = svgText;
  $(id).innerHTML = svgText;
}

function drawConfidence() {
  const p = app.result.prediction;
  show('confidence', charts.confidenceHistograms(p.classes, p.predicted, p.scNym_confidence, { threshold: Number($('low-threshold').value) }));
}

function drawConfusion() {
  const r = app.result;
  if (!r.queryLabels) {
    delete app.plots.confusion;
    $('confusion').innerHTML = '<p class="muted">Choose the query\'s own label column above (and run again) to compare it with the predictions. The demo query is unlabelled.</p>';
    return;
  }
  const kinds = new Set(r.queryLabels).size;
  if (kinds > 80) {
    delete app.plots.confusion;
    $('confusion').innerHTML = `<p class="muted">'${esc(r.queryLabelKey)}' has ${kinds.toLocaleString()} values: not a label column to compare with.</p>`;
    return;
  }
  const { svg } = charts.confusionMatrix(r.queryLabels, r.prediction.scNym);
  show('confusion', svg);
}

/** Where CellTypist's labels and scNym's agree: a confusion matrix between the two. */
function drawCelltypist() {
  const ct = app.result.celltypist;
  $('celltypist-card').hidden = !ct;
  if (!ct) return delete app.plots.celltypist;
  const p = ct.prediction, scnym = app.result.prediction.scNym;
  const same = p.labels.filter((l, i) => l === scnym[i]).length;
  $('celltypist-summary').innerHTML = `CellTypist (${esc(ct.name)}, ${esc(ct.info.classifier)}, ${p.classes.length} types; ${p.genesUsed.toLocaleString()} of its genes in the query)`
    + ` gives the same label as scNym to <b>${same.toLocaleString()}</b> of ${p.labels.length.toLocaleString()} cells (${(100 * same / p.labels.length).toFixed(1)}%)`
    + (p.majority_voting ? `, after majority voting (${esc(p.clustering)})` : '') + '. Rows: CellTypist; columns: scNym.'
    + (p.report.warnings.length ? ` <span class="warn">${p.report.warnings.map(esc).join(' ')}</span>` : '');
  show('celltypist', charts.confusionMatrix(p.labels, scnym, { rowsAre: 'CellTypist', colsAre: 'scNym' }).svg);
}

function drawDataMap() {
  const a = app.result.audit;
  if (!a) {
    delete app.plots.datamap;
    $('datamap').innerHTML = '<p class="muted">The audit was switched off.</p>';
    return;
  }
  show('datamap', charts.dataMap(a));
  const auroc = a.noise_run?.auroc;
  $('datamap').insertAdjacentHTML('beforeend', `<p class="muted">cutoffs: confidence ${a.cutoffs.confidence.toFixed(3)}, variability ${a.cutoffs.variability.toFixed(3)}`
    + (auroc != null ? `; simulated-noise check: 1 − confidence finds flipped labels with AUROC ${auroc.toFixed(3)}` : '')
    + `; trained on ${esc(a.gene_selection)}</p>`);
}

function drawTrainability() {
  const g = app.result.audit?.gene_scores;
  if (!g) {
    delete app.plots.trainability;
    $('trainability').innerHTML = '<p class="muted">No trainability scores (the audit was switched off).</p>';
    return;
  }
  show('trainability', charts.geneBars('genes associated with easy-to-learn cells (conf_score_high)', g.genes, g.conf_score_high, { color: '#2f855a' }));
}

async function explain() {
  const r = app.result, target = $('explain-class').value;
  delete app.plots.saliency;
  $('saliency').innerHTML = `<p class="muted">explaining ${esc(target)}…</p>`;
  $('explain').disabled = true;
  try {
    // The query with its predicted labels as the groups: explain why cells were called `target`.
    r.labelled ??= await r.client.withObs(r.query, 'scNym', r.prediction.scNym);
    const e = await r.client.explainScnym(r.model, r.labelled, 'scNym', { target, n_samples: 32, n_cells: 200, normalize: true, use_raw: r.queryRaw });
    if (app.result !== r || $('explain-class').value !== target) return; // a newer run or class is shown
    show('saliency', charts.geneBars(`expected-gradient saliency for ${target} (${e.cells.length} cells)`, e.genes, e.saliency));
  } catch (err) {
    if (app.result === r) $('saliency').innerHTML = `<p class="error">${esc(err.message)}</p>`;
  } finally {
    if (app.result === r) $('explain').disabled = document.body.dataset.state === 'running';
  }
}

function lowConfidenceRows() {
  const p = app.result.prediction, threshold = Number($('low-threshold').value);
  const rows = [];
  for (let i = 0; i < p.cells; i++) {
    if (p.scNym[i] === 'Unassigned' || p.scNym_confidence[i] < threshold) rows.push(i);
  }
  return rows.sort((a, b) => p.scNym_confidence[a] - p.scNym_confidence[b]);
}

function drawLowConfidence() {
  const r = app.result, p = r.prediction, rows = lowConfidenceRows(), shown = rows.slice(0, 500);
  const best2 = (i) => {
    const probs = p.scNym_probabilities.subarray(i * p.classes.length, (i + 1) * p.classes.length);
    const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]);
    return order.slice(0, 2).map((k) => `${esc(p.classes[k])} ${probs[k].toFixed(2)}`).join(', ');
  };
  $('low-count').textContent = `${rows.length.toLocaleString()} of ${p.cells.toLocaleString()} cells${rows.length > shown.length ? ` (the ${shown.length} least confident listed)` : ''}`;
  $('low-table').innerHTML = '<tr><th>cell</th><th>scNym</th><th>confidence</th><th>top classes</th>' + (r.queryLabels ? '<th>query label</th>' : '') + '</tr>'
    + shown.map((i) => `<tr><td>${esc(r.queryNames[i])}</td><td>${esc(p.scNym[i])}</td><td>${p.scNym_confidence[i].toFixed(3)}</td><td>${best2(i)}</td>`
      + (r.queryLabels ? `<td>${esc(r.queryLabels[i] ?? '—')}</td>` : '') + '</tr>').join('');
}

// ---- exports -------------------------------------------------------------------------------

const stem = (name) => String(name ?? 'data').replace(/\.(h5ad|zarr|zip)$/i, '').replace(/\.zarr$/i, '');

/** The query's predictions as CSV columns: scNym's, CellTypist's (`ct`, when it ran) beside them. */
function predictionColumns(p, ct) {
  const columns = { scNym: p.scNym, scNym_confidence: p.scNym_confidence };
  if (ct) {
    Object.assign(columns, { predicted_labels: ct.predicted_labels, conf_score: ct.conf_score });
    if (ct.majority_voting) columns.majority_voting = ct.majority_voting;
  }
  p.classes.forEach((name, k) => {
    columns[`p_${name}`] = Float32Array.from({ length: p.cells }, (_, i) => p.scNym_probabilities[i * p.classes.length + k]);
  });
  return columns;
}

async function exportPlot(id, format) {
  if (id === 'embedding') {
    const blob = format === 'png' ? await imageDataToPng(await app.embedding.png()) : new Blob([app.embedding.svg()], { type: 'image/svg+xml' });
    return download(blob, `sclabel-embedding.${format}`);
  }
  const svgText = app.plots[id];
  if (!svgText) return showError(new Error(`the ${id} plot is empty`));
  download(format === 'png' ? await svgToPng(svgText) : new Blob([svgText], { type: 'image/svg+xml' }), `sclabel-${id}.${format}`);
}

/** CSV built in blocks of rows: one string for a million cells would pass the engine's string limit. */
function csvBlob(columns, names, block = 50_000) {
  const parts = [];
  for (let a = 0; a < names.length || a === 0; a += block) {
    const b = Math.min(names.length, a + block);
    const slice = Object.fromEntries(Object.entries(columns).map(([k, v]) => [k, v.slice(a, b)]));
    const text = toCsv(slice, names.slice(a, b));
    parts.push(a === 0 ? text : text.slice(text.indexOf('\n') + 1)); // the header once
  }
  return new Blob(parts, { type: 'text/csv' });
}

const exporters = {
  'export-csv': async (r) => download(csvBlob(predictionColumns(r.prediction, r.celltypist?.prediction), r.queryNames), `${stem(r.query.name)}-scnym.csv`),
  'export-h5ad': async (r) => download(await r.client.exportH5ad(r.query, predictionAdditions(r.prediction)), `${stem(r.query.name)}-scnym.h5ad`),
  'export-audit': async (r) => {
    if (!r.audit) throw new Error('the audit was switched off');
    const a = r.audit, names = Array.from(a.cells, (row) => r.refNames[row]);
    const columns = { label: a.labels, conf: a.conf, var: a.var, category: a.category, trusted: a.trusted };
    if (a.corrected_label) columns.corrected_label = a.corrected_label;
    download(csvBlob(columns, names), `${stem(r.reference.name)}-annotatability.csv`);
  },
  'export-model': async (r) => download(await r.client.saveModel(r.model), 'sclabel-scnym-model.safetensors'),
  // The label as a categorical annotation (confidence is not one: CELLxGENE reads every column as categories).
  'export-cellxgene': async (r) => download(toCellxgeneAnnotations({ scNym: r.prediction.scNym }, r.queryNames), `${stem(r.query.name)}-scnym-cellxgene.csv`, 'text/csv'),
  'export-cellbrowser': async (r) => download(toCellBrowserMeta({ scNym: r.prediction.scNym, scNym_confidence: r.prediction.scNym_confidence }, r.queryNames), `${stem(r.query.name)}-scnym-meta.tsv`, 'text/tab-separated-values'),
  'export-vitessce': async (r) => download(JSON.stringify(toVitessceCellSets(r.prediction, r.queryNames)), `${stem(r.query.name)}-scnym.cell-sets.json`, 'application/json'),
};

// ---- wiring --------------------------------------------------------------------------------

/** The CellTypist model chosen beside scNym: { source, name }, or null. */
function celltypistSource() {
  const choice = $('celltypist-model').value;
  if (choice === 'demo') return { source: 'data/celltypist_pbmc3k.pkl', name: 'celltypist_pbmc3k.pkl' };
  const file = $('celltypist-file').files[0];
  if (choice === 'own' && !file) throw Object.assign(new Error('choose the CellTypist model file (.pkl), or none'), { code: 'invalid_option' });
  return choice === 'own' ? { source: file, name: file.name } : null;
}

function chooseInput(role, source, name) {
  app.inputs[role] = { source, name };
  document.querySelector(`.drop[data-role=${role}] .drop-name`).textContent = name;
  app.inputsVersion++;
  if (app.inputs.query) ensureData().catch(reportUnlessReplaced);
}

for (const drop of document.querySelectorAll('.drop')) {
  const role = drop.dataset.role;
  drop.querySelector('.pick-file').addEventListener('change', (e) => {
    const f = e.target.files[0];
    if (f) chooseInput(role, f, f.name);
  });
  drop.querySelector('.pick-dir-button').addEventListener('click', () => drop.querySelector('.pick-dir').click());
  drop.querySelector('.pick-dir').addEventListener('change', (e) => {
    const files = [...e.target.files];
    if (files.length) chooseInput(role, files, files[0].webkitRelativePath.split('/')[0]);
  });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    // Read the drop's contents before any await: the browser empties dataTransfer afterwards.
    const file = e.dataTransfer.files[0];
    const pending = [...e.dataTransfer.items].find((i) => i.kind === 'file')?.getAsFileSystemHandle?.();
    const handle = await pending?.catch(() => null);
    if (handle?.kind === 'directory') return chooseInput(role, handle, handle.name); // a Zarr folder
    if (file) chooseInput(role, file, file.name);
  });
}

for (const radio of document.querySelectorAll('input[name=source]')) {
  radio.addEventListener('change', () => {
    $('own').hidden = radio.value === 'demo' ? radio.checked : !radio.checked;
    if (sources().query) ensureData().catch(reportUnlessReplaced);
  });
}
$('backend').addEventListener('change', () => { ensureData().catch(reportUnlessReplaced); });
$('atlas').addEventListener('change', () => {
  $('atlas-mode').disabled = !$('atlas').value;
  if (sources().query) ensureData().catch(reportUnlessReplaced);
});
$('preset').addEventListener('change', () => {
  // scNym's new-identity preset is meant to leave cells unassigned; no_new_identity needs no threshold.
  $('unassigned').value = $('preset').value === 'new_identity_discovery' ? '0.5' : '0';
});
$('celltypist-model').addEventListener('change', () => {
  $('celltypist-file').hidden = $('celltypist-model').value !== 'own';
  if ($('celltypist-model').value === 'own' && !$('celltypist-file').files[0]) $('celltypist-file').click();
});
$('celltypist-file').addEventListener('change', () => { $('celltypist-info').textContent = $('celltypist-file').files[0]?.name ?? ''; });
$('run').addEventListener('click', run);
$('cancel').addEventListener('click', () => app.controller?.abort());
$('color-by').addEventListener('change', () => recolor().catch(showError));
$('explain').addEventListener('click', explain);
let thresholdTimer = 0;
$('low-threshold').addEventListener('input', () => {
  clearTimeout(thresholdTimer);
  thresholdTimer = setTimeout(() => { if (app.result) { drawLowConfidence(); drawConfidence(); } }, 150);
});
for (const b of document.querySelectorAll('[data-export]')) {
  b.setAttribute('aria-label', `export the ${b.dataset.export} plot as ${b.dataset.format.toUpperCase()}`);
}
document.addEventListener('click', async (e) => {
  const b = e.target.closest('[data-export]');
  if (b) exportPlot(b.dataset.export, b.dataset.format).catch(showError);
  const ex = exporters[e.target.id];
  if (ex && app.result) {
    e.target.disabled = true;
    try { await ex(app.result); } catch (err) { showError(err); } finally { updateExportButtons(); }
  }
});

$('unassigned').value = $('preset').value === 'new_identity_discovery' ? '0.5' : '0';
$('atlas-mode').disabled = true;
// The atlases this page lists (scripts/build-demo-atlas.mjs builds one); a page without any still works.
loadRegistry(new URL('data/atlases.json', location.href)).then((registry) => {
  app.registry = registry;
  $('atlas').append(...registry.atlases.map((a, i) => new Option(`atlas: ${a.name ?? a.id}`, String(i))));
}, (e) => console.warn(`no atlas registry: ${e.message}`));
ensureData().catch(reportUnlessReplaced);
