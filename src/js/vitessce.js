// sclabel as a view inside Vitessce (https://vitessce.io), through Vitessce's plugin API only: a
// plugin view type whose view reads the data set Vitessce has loaded (its obsFeatureMatrix, through
// Vitessce's own loaders and data hooks), transfers labels to it in sclabel's worker (an atlas from
// a registry, or a reference file the user picks), and writes the result back as cell sets
// (`additionalObsSets`, with each cell's confidence as its score) that Vitessce's embedding,
// heatmap and set views colour by. Optional: an audit of the transferred labels (Annotatability)
// and a class's genes (expected gradients), a click on a gene colouring the views by it.
//
// `vitessce`'s prebuilt bundle keeps its own copy of `@vitessce/vit-s`, whose React contexts the
// data hooks need, so a host renders `Vitessce` from `@vitessce/all` (the same component, unbundled)
// and the bundler shares one vit-s between it and this view. See docs/viewers.md.
import { createElement as h, useEffect, useRef, useState } from 'react';
import { PluginViewType } from '@vitessce/all';
import { TitleInfo, useCoordination, useCoordinationScopes, useLoaders, useObsFeatureMatrixData, useReady } from '@vitessce/vit-s';
import { open, loadRegistry, toVitessceCellSets, toVitessceConfidenceSets } from './index.js';

/** The coordination types the view reads and sets (Vitessce's names). */
const COORDINATION_TYPES = [
  'dataset', 'obsType', 'featureType', 'featureValueType',
  'obsSetSelection', 'obsSetColor', 'obsSetExpansion', 'obsColorEncoding', 'additionalObsSets', 'featureSelection',
];

/** The obs column the transferred labels get on sclabel's copy of the data (for audit / explain). */
const LABEL_COLUMN = 'sclabel';

/**
 * The sclabel view type for `<Vitessce pluginViewTypes={[…]} />`; a config's layout places it as
 * `{ component: name }`. Options: `registry` (URL of an atlases.json, or a loaded registry) to offer
 * its atlases; `client` (an opened sclabel client to share; otherwise the view opens its own with
 * `backend` and closes it when removed); `name` (the component name, 'sclabel'); `onResult`
 * (called with `{ prediction, audit, obsNames }` after each run).
 */
export function sclabelViewType({ name = 'sclabel', registry = null, client = null, backend = 'auto', onResult } = {}) {
  const View = (props) => h(SclabelView, { ...props, options: { registry, client, backend, onResult } });
  return new PluginViewType(name, View, COORDINATION_TYPES);
}

/** The view: Vitessce renders it with its coordination scopes; `options` come from sclabelViewType. */
function SclabelView({ coordinationScopes: rawScopes, removeGridComponent, theme, title = 'sclabel', options }) {
  const loaders = useLoaders();
  const scopes = useCoordinationScopes(rawScopes);
  const [coordination, setters] = useCoordination(COORDINATION_TYPES, scopes);
  const { dataset, obsType, featureType, featureValueType } = coordination;
  const [{ obsIndex, featureIndex, obsFeatureMatrix }, matrixStatus, , matrixError] = useObsFeatureMatrixData(
    loaders, dataset, false, {}, {}, { obsType, featureType, featureValueType },
  );
  const isReady = useReady([matrixStatus]);
  const sclabel = useClient(options);
  const registry = useRegistry(options.registry);

  const [source, setSource] = useState('');
  const [reference, setReference] = useState(null); // { file, handle, columns, labelKey } or { error }
  const [doAudit, setDoAudit] = useState(false);
  const [run, setRun] = useState({ state: 'idle' }); // idle | running | done | failed
  const [genes, setGenes] = useState(null); // { label, ranked: [gene, saliency][] }
  const abort = useRef(null);
  const runId = useRef(0); // the latest run: late results of an older run or explanation are dropped
  const held = useRef({ query: null, labelled: null, model: null }); // handles to free on the next run
  const atlasModels = useRef(new Map()); // registry index → Promise<model handle>, opened once
  const latest = useRef(coordination); // the coordination values now, not when a run started
  latest.current = coordination;
  const referenceRef = useRef(reference);
  referenceRef.current = reference;
  const matrix = obsFeatureMatrix?.data;
  const canRun = sclabel.client && matrix && obsIndex && featureIndex && (source.startsWith('atlas:') || (source === 'file' && reference?.handle && reference.labelKey));

  // When the view goes: stop a run, and free what it holds in a client it shares with the host
  // (a client it opened itself is closed with everything in it).
  useEffect(() => () => {
    abort.current?.abort();
    const c = sclabel.client;
    if (c && options.client) {
      release(c, held.current);
      for (const m of atlasModels.current.values()) m.then((h) => c.free(h)).catch(() => {});
      if (referenceRef.current?.handle) c.free(referenceRef.current.handle).catch(() => {});
    }
  }, [sclabel.client]);

  /** The atlas's model, opened once per registry entry (an atlas package or a model bundle). */
  function atlasModel(c, index) {
    if (!atlasModels.current.has(index)) {
      const entry = registry.value.atlases[index];
      const opened = entry.manifest ? c.openAtlas(entry, { reference: false }).then((a) => a.model) : c.loadAtlas(entry);
      opened.catch(() => atlasModels.current.delete(index)); // a failed open is tried again next time
      atlasModels.current.set(index, opened);
    }
    return atlasModels.current.get(index);
  }

  async function start() {
    if (abort.current) return; // already running
    const c = sclabel.client;
    const controller = new AbortController();
    abort.current = controller;
    const id = ++runId.current;
    setGenes(null);
    setRun({ state: 'running', what: 'reading the matrix', fraction: 0 });
    const progress = (what) => (p) => setRun({ state: 'running', what, fraction: progressFraction(p) });
    // Steps that take no signal are checked between: a cancel stops the run before its next step.
    const step = async (promise) => {
      const out = await promise;
      if (controller.signal.aborted) throw Object.assign(new Error('cancelled'), { code: 'cancelled' });
      return out;
    };
    try {
      await release(c, held.current);
      const query = await step(c.fromMatrix(
        { nObs: obsIndex.length, nVars: featureIndex.length, dense: matrix },
        { obsNames: obsIndex, varNames: featureIndex, name: dataset ?? 'Vitessce data set' },
      ));
      held.current.query = query;
      let model, setName;
      if (source.startsWith('atlas:')) {
        const index = Number(source.slice(6));
        const entry = registry.value.atlases[index];
        setRun({ state: 'running', what: `opening ${entry.name ?? entry.id}`, fraction: 0 });
        model = await step(atlasModel(c, index));
        setName = `sclabel: ${entry.name ?? entry.id}`;
      } else {
        model = await c.trainScnym(reference.handle, query, { label_key: reference.labelKey, normalize: true }, { signal: controller.signal, onProgress: progress('training scNym') });
        held.current.model = model;
        setName = `sclabel: ${reference.file.name}`;
      }
      const prediction = await c.predictScnym(model, query, { normalize: true, embedding: false }, { signal: controller.signal, onProgress: progress('labelling the cells') });
      const trees = [
        toVitessceCellSets(prediction, obsIndex, { name: setName }),
        toVitessceConfidenceSets(prediction, obsIndex, { name: `${setName} (confidence)` }),
      ];
      const labelled = await step(c.withObs(query, LABEL_COLUMN, prediction.scNym));
      held.current.labelled = labelled;
      let audit = null;
      if (doAudit) {
        audit = await c.audit(labelled, { label_key: LABEL_COLUMN, exclude_labels: ['Unassigned'] }, { signal: controller.signal, onProgress: progress('auditing the transferred labels') });
        trees.push(auditSets(audit, obsIndex, `${setName} (audit)`));
      }
      showSets(trees, latest.current, setters);
      setRun({ state: 'done', model, labelled, prediction, audit, setName });
      options.onResult?.({ prediction, audit, obsNames: obsIndex });
    } catch (e) {
      setRun(e.code === 'cancelled' ? { state: 'idle', note: 'cancelled' } : { state: 'failed', error: e });
    } finally {
      if (runId.current === id) abort.current = null;
    }
  }

  async function explain(label) {
    const id = runId.current;
    setGenes({ label, ranked: null });
    try {
      const e = await sclabel.client.explainScnym(run.model, run.labelled, LABEL_COLUMN, { target: label, n_cells: 200, n_samples: 32, normalize: true });
      if (runId.current === id) setGenes({ label, ranked: Array.from(e.ranking.slice(0, 10), (g) => [e.genes[g], e.saliency[g]]) });
    } catch (err) {
      if (runId.current === id) setGenes({ label, error: err });
    }
  }

  const body = [];
  if (sclabel.error) body.push(errorLine('sclabel could not start', sclabel.error));
  if (matrixError) body.push(errorLine('Vitessce could not load the expression matrix', matrixError));
  else if (isReady && !matrix) body.push(h('p', { key: 'nomatrix' }, 'This data set has no obsFeatureMatrix file in the config: sclabel needs the expression matrix.'));
  if (matrix) body.push(h('p', { key: 'size', className: 'sclabel-size' }, `${obsIndex.length.toLocaleString()} cells × ${featureIndex.length.toLocaleString()} genes`));
  body.push(sourcePicker({ registry, source, setSource, reference, setReference, client: sclabel.client }));
  body.push(h('label', { key: 'audit', style: { display: 'block' } },
    h('input', { type: 'checkbox', checked: doAudit, onChange: (ev) => setDoAudit(ev.target.checked) }), ' also audit the transferred labels (Annotatability)'));
  body.push(run.state === 'running'
    ? h('div', { key: 'run' },
      h('button', { type: 'button', onClick: () => abort.current?.abort(), 'data-sclabel': 'cancel' }, 'Cancel'),
      h('progress', { max: 1, value: run.fraction ?? undefined, style: { marginLeft: 8 } }), ` ${run.what}…`)
    : h('button', { key: 'run', type: 'button', disabled: !canRun, onClick: start, 'data-sclabel': 'run' }, 'Transfer labels'));
  if (run.note) body.push(h('p', { key: 'note' }, run.note));
  if (run.state === 'failed') body.push(errorLine('sclabel failed', run.error));
  if (run.state === 'done') body.push(resultSummary(run, explain, genes, setters));

  return h(TitleInfo, { title, theme, removeGridComponent, isScroll: true, isReady: true, urls: [], helpText: 'Label transfer (scNym) in your browser: pick an atlas or a labelled reference file.' },
    h('div', { className: 'sclabel-view', 'data-sclabel-state': run.state, style: { fontSize: 13 } }, body));
}

/** The sclabel client: the host's, or one opened for this view (closed when the view goes). */
function useClient({ client, backend }) {
  const [state, setState] = useState({ client, error: null });
  useEffect(() => {
    if (client) return undefined;
    let opened = null;
    let gone = false;
    open({ backend }).then((c) => {
      if (gone) c.close();
      else setState({ client: (opened = c), error: null });
    }, (error) => !gone && setState({ client: null, error }));
    return () => { gone = true; opened?.close(); };
  }, [client, backend]);
  return state;
}

/** The registry's atlases, loaded once (a URL) or as given. */
function useRegistry(source) {
  const [state, setState] = useState({ value: null, error: null });
  useEffect(() => {
    if (!source) return;
    loadRegistry(source).then((value) => setState({ value, error: null }), (error) => setState({ value: null, error }));
  }, [source]);
  return state;
}

/** The atlas / reference choice: the registry's atlases, or a labelled .h5ad / zipped AnnData-Zarr. */
function sourcePicker({ registry, source, setSource, reference, setReference, client }) {
  const atlases = registry.value?.atlases ?? [];
  const pickFile = async (file) => {
    if (!file) return;
    if (reference?.handle) client.free(reference.handle).catch(() => {});
    setReference({ file, labelKey: null, columns: null });
    // Loaded once, here: its categorical obs columns are the label choices, and training reuses it.
    const handle = await client.load(file, { name: file.name });
    const columns = handle.summary.obs.filter((c) => c.kind === 'categorical' || c.kind === 'string').map((c) => c.name);
    setReference((now) => {
      if (now?.file !== file) { // another file was picked meanwhile
        client.free(handle).catch(() => {});
        return now;
      }
      return { file, handle, columns, labelKey: columns.find((c) => /cell_?type|label/i.test(c)) ?? columns[0] ?? null };
    });
  };
  return h('div', { key: 'source' },
    h('select', { value: source, onChange: (ev) => setSource(ev.target.value), 'data-sclabel': 'source', style: { maxWidth: '100%' } },
      h('option', { value: '' }, '— choose an atlas or a reference —'),
      atlases.map((a, i) => h('option', { key: `${i}:${a.id}@${a.version}`, value: `atlas:${i}` }, `atlas: ${a.name ?? a.id}`)),
      h('option', { value: 'file' }, 'a labelled reference file (.h5ad, AnnData-Zarr zip)…')),
    registry.error ? errorLine('the atlas registry could not be read', registry.error) : null,
    source === 'file' ? h('div', null,
      h('input', { type: 'file', accept: '.h5ad,.zip', disabled: !client, onChange: (ev) => pickFile(ev.target.files[0]).catch((e) => setReference({ error: e })), 'data-sclabel': 'reference' }),
      reference?.error ? errorLine('the reference could not be read', reference.error) : null,
      reference?.columns ? h('label', null, ' labels in ',
        h('select', { value: reference.labelKey ?? '', onChange: (ev) => setReference({ ...reference, labelKey: ev.target.value }) },
          reference.columns.map((c) => h('option', { key: c, value: c }, c)))) : null) : null);
}

/** What a run found: its classes with their cell counts, each with a "genes" button (explanations). */
function resultSummary(run, explain, genes, setters) {
  const counts = new Map();
  for (const l of run.prediction.scNym) counts.set(l, (counts.get(l) ?? 0) + 1);
  const warnings = run.prediction.report.warnings;
  return h('div', { key: 'result', 'data-sclabel': 'result' },
    h('p', null, `${run.prediction.cells.toLocaleString()} cells labelled: see “${run.setName}” in the cell sets.`),
    warnings.length ? h('ul', { className: 'sclabel-warnings' }, warnings.map((w) => h('li', { key: w }, w))) : null,
    h('table', null, h('tbody', null, [...counts].sort((a, b) => b[1] - a[1]).map(([label, n]) => h('tr', { key: label },
      h('td', null, label), h('td', { style: { textAlign: 'right', padding: '0 8px' } }, n.toLocaleString()),
      h('td', null, label === 'Unassigned' ? null : h('button', { type: 'button', onClick: () => explain(label) }, 'genes')))))),
    genes ? h('div', { 'data-sclabel': 'genes' },
      h('p', null, `Genes behind “${genes.label}” (expected gradients)`, genes.ranked ? ': click one to colour by it' : '…'),
      genes.error ? errorLine('no explanation', genes.error) : null,
      genes.ranked?.map(([g, s]) => h('button', {
        key: g, type: 'button', title: `saliency ${s.toPrecision(3)}`, style: { margin: 2 },
        onClick: () => { setters.setFeatureSelection([g]); setters.setObsColorEncoding('geneSelection'); },
      }, g))) : null);
}

function errorLine(what, e) {
  return h('p', { key: what, role: 'alert', style: { color: '#b00020' } }, `${what}: ${e?.message ?? e}`);
}

/** A progress event as a fraction (training: over epochs and steps; prediction: over cells). */
function progressFraction(p) {
  if (p.phase === 'train' && p.n_epochs) return Math.min(1, (p.epoch + (p.steps_per_epoch ? p.step / p.steps_per_epoch : 0)) / p.n_epochs);
  if (p.cells_total) return Math.min(1, p.cells_done / p.cells_total);
  return undefined;
}

/** Frees the handles of the last run (an atlas model stays: the client caches it). */
async function release(client, held) {
  for (const k of Object.keys(held)) {
    if (held[k]) await client.free(held[k]).catch(() => {});
    held[k] = null;
  }
}

/** An audit as cell sets: its categories (easy-to-learn, ambiguous, hard-to-learn), scored by conf. */
function auditSets(audit, obsNames, name) {
  const order = ['easy-to-learn', 'ambiguous', 'hard-to-learn'];
  const colors = { 'easy-to-learn': [26, 150, 65], ambiguous: [253, 174, 97], 'hard-to-learn': [215, 25, 28] };
  const sets = new Map(order.map((c) => [c, []]));
  audit.cells.forEach((cell, i) => sets.get(audit.category[i]).push([String(obsNames[cell]), audit.conf[i]]));
  return { version: '0.1.3', tree: [{ name, children: order.map((c) => ({ name: c, color: colors[c], set: sets.get(c) })).filter((c) => c.set.length > 0) }] };
}

/**
 * Puts sclabel's trees into Vitessce's additionalObsSets (replacing an earlier run's of the same
 * names, keeping the user's own), with their colours, and selects the label sets so the views
 * colour cells by them.
 */
function showSets(trees, { additionalObsSets, obsSetColor }, setters) {
  const nodes = trees.map((t) => t.tree[0]);
  const ours = new Set(nodes.map((n) => n.name));
  const kept = (additionalObsSets?.tree ?? []).filter((n) => !ours.has(n.name));
  setters.setAdditionalObsSets({ version: '0.1.3', tree: [...kept, ...nodes] });
  const colors = nodes.flatMap((n) => n.children.map((c) => ({ path: [n.name, c.name], color: c.color })));
  setters.setObsSetColor([...(obsSetColor ?? []).filter((c) => !ours.has(c.path[0])), ...colors]);
  setters.setObsSetSelection(nodes[0].children.map((c) => [nodes[0].name, c.name]));
  setters.setObsSetExpansion([[nodes[0].name]]);
  setters.setObsColorEncoding('cellSetSelection');
}

export { COORDINATION_TYPES as SCLABEL_COORDINATION_TYPES };
