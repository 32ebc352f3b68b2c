// Compiled (not run) by types.test.mjs: the public API as a TypeScript user writes it.
import { startSession, readH5ad, syntheticDataset, type HoldoutReport, type Progress, type SclabelError } from 'sclabel';

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
