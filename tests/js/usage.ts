// Compiled (not run) by types.test.mjs: the public API as a TypeScript user writes it.
import { startSession, readH5ad, syntheticDataset, type HoldoutReport, type Progress, type SclabelError, type Dataset, type SclabelSession, type ScnymModel, type ScnymPrediction } from 'sclabel';

export async function example(file: File): Promise<number> {
  const data = file.size > 0 ? await readH5ad(file) : await syntheticDataset({ nCells: 100 });
  const summary = data.summary();
  const labels = summary.obs.filter((c) => c.kind === 'categorical').map((c) => c.name);
  const session = await startSession({ backend: 'auto' });
  const controller = new AbortController();
  try {
    const report: HoldoutReport = await session.trainHoldout(data, { label_key: labels[0], train: { epochs: 5, optimizer: { kind: 'adam' } } }, {
      onProgress: (p: Progress) => console.log(p.epoch, p.loss ?? '…'),
      signal: controller.signal,
    });
    return report.test_accuracy + (report.backend.backend === 'webgpu' ? 0 : 0);
  } catch (e) {
    if ((e as SclabelError).code === 'cancelled') return NaN;
    throw e;
  } finally {
    session.dispose();
    data.free();
  }
}

// scNym: train on a reference with a query, predict, save and reload the bundle.
export async function transfer(reference: Dataset, query: Dataset): Promise<string[]> {
  const session: SclabelSession = await startSession({ backend: 'auto' });
  const model: ScnymModel = await session.trainScnym(reference, query, {
    label_key: 'cell_type', domain_key: 'batch', preset: 'new_identity_discovery', normalize: true,
    config: { n_epochs: 20, ssl_kwargs: { T: 0.5 } },
  });
  const bytes: Uint8Array = await model.toBytes();
  const again = await session.loadScnymModel(bytes);
  const p: ScnymPrediction = await session.predictScnym(again, query, { normalize: true, unassigned_below: 0.5 });
  const firstProbabilities: Float32Array = p.probabilities.subarray(0, p.classes.length);
  console.log(firstProbabilities, p.embeddingDim, p.report.overlap.shared, model.warnings);
  return p.labels;
}
