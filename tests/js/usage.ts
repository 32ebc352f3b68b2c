// Compiled (not run) by types.test.mjs: the public API as a TypeScript user writes it.
import {
  open, toCsv, predictionAdditions, auditAdditions, loadRegistry, toVitessceConfidenceSets, loadCelltypistIndex,
  type CelltypistHandle, type CelltypistPrediction,
  type HoldoutReport, type Progress, type SclabelError, type DatasetHandle, type Sclabel, type ModelHandle, type ScnymPrediction, type AuditResult,
} from 'sclabel';
import { sclabelViewType } from 'sclabel/vitessce';

export async function example(file: File): Promise<number> {
  const sl = await open({ backend: 'auto' });
  const data = file.size > 0 ? await sl.load(file) : await sl.synthetic({ nCells: 100 });
  const labels = data.summary.obs.filter((c) => c.kind === 'categorical').map((c) => c.name);
  const controller = new AbortController();
  try {
    const report: HoldoutReport = await sl.trainHoldout(data, { label_key: labels[0], train: { n_epochs: 5, optimizer: { kind: 'adam' } } }, {
      onProgress: (p: Progress) => console.log(p.epoch, p.loss ?? '…'),
      signal: controller.signal,
    });
    // The types are the core's: an old spelling is caught by the compiler, not only by the core.
    // @ts-expect-error: the training option is n_epochs (TrainOptions), as scNym's config.
    await sl.trainHoldout(data, { train: { epochs: 5 } });
    // @ts-expect-error: the audit's target scale is `scale` ('cp10k' | 'cpm').
    await sl.audit(data, { normalize: 'cp10k' });
    return report.test_accuracy + (report.backend.backend === 'webgpu' ? 0 : 0);
  } catch (e) {
    if ((e as SclabelError).code === 'cancelled') return NaN;
    throw e;
  } finally {
    sl.close();
  }
}

// scNym: train on a reference with a query, predict, save and reload the bundle, export.
export async function transfer(sl: Sclabel, reference: DatasetHandle, query: DatasetHandle): Promise<string> {
  const model: ModelHandle = await sl.trainScnym(reference, query, {
    label_key: 'cell_type', domain_key: 'batch', preset: 'new_identity_discovery', normalize: true,
    config: { n_epochs: 20, ssl_kwargs: { T: 0.5 }, host_network: true },
  });
  const bytes: Uint8Array = await sl.saveModel(model);
  const again = await sl.loadModel(bytes);
  const p: ScnymPrediction = await sl.predictScnym(again, query, { normalize: true, unassigned_below: 0.5 });
  const firstProbabilities: Float32Array = p.scNym_probabilities.subarray(0, p.classes.length);
  console.log(firstProbabilities, p.embeddingDim, p.report.overlap.shared, model.warnings, p.backend.reason);
  const h5ad: Blob = await sl.exportH5ad(query, predictionAdditions(p));
  console.log(h5ad.size);
  const registry = await loadRegistry('/atlases/registry.json');
  if (registry.atlases[0].url) await sl.loadAtlas(registry.atlases[0]);
  const atlas = await sl.openAtlas(registry.atlases[0].manifest ?? '/atlases/pbmc/atlas.json');
  const classes: string[] = atlas.manifest.classes.map((c) => `${c.label} (${c.ontology_id ?? 'no CL id'})`);
  const instant = await sl.predictScnym(atlas.model, query, { normalize: true });
  const tuned = await sl.fineTuneAtlas(atlas, query, { normalize: true, config: { n_epochs: 20 } });
  console.log(tuned.warnings);
  const built = await sl.buildAtlas(query, { id: 'mine', label_key: 'cell_type', normalize: true, values: 'q8' });
  console.log(built.manifest.files.matrix.path, built.matrix.byteLength, built.model.byteLength);
  console.log(classes, instant.scNym.length);
  return toCsv({ scNym: p.scNym, scNym_confidence: p.scNym_confidence }, await sl.obsNames(query));
}

export async function auditToFile(sl: Sclabel, data: DatasetHandle): Promise<Blob> {
  const a: AuditResult = await sl.audit(data, { label_key: 'cell_type' });
  return sl.exportH5ad(data, auditAdditions(a, data.nObs));
}

// A viewer's arrays as a data set, and the Vitessce view (sclabel/vitessce).
export async function fromViewer(values: Float32Array, cells: string[], genes: string[]): Promise<number> {
  const sl = await open({ backend: 'cpu', predictWorkers: 2 });
  const data = await sl.fromMatrix({ nObs: cells.length, nVars: genes.length, dense: values }, { obsNames: cells, varNames: genes });
  const x = await sl.matrix(data);
  const model = await sl.loadModel('/model.safetensors');
  const bands = toVitessceConfidenceSets(await sl.predictScnym(model, data), cells, { edges: [0.5, 0.9] });
  const view = sclabelViewType({ registry: '/atlases.json', backend: 'cpu', onResult: ({ prediction }) => console.log(prediction.scNym.length) });
  console.log(view, bands.tree[0].children.length);
  return x.indptr.length;
}

// CellTypist: a model from its index or a .pkl the user picked, with majority voting.
export async function celltypist(pkl: File, query: DatasetHandle): Promise<string[]> {
  const sl = await open();
  const index = await loadCelltypistIndex('https://example.org/models/models.json');
  const model: CelltypistHandle = pkl.size > 0 ? await sl.loadCelltypist(pkl) : await sl.loadCelltypist(index.models[0]);
  const p: CelltypistPrediction = await sl.predictCelltypist(model, query, { majority_voting: true, over_cluster: { resolution: 10 }, p_thres: 0.5 });
  // @ts-expect-error: the threshold is p_thres, as CellTypist names it.
  await sl.predictCelltypist(model, query, { threshold: 0.5 });
  console.log(p.conf_score[0], p.report.overlap.shared, await sl.saveCelltypist(model));
  return p.majority_voting ?? p.predicted_labels;
}
