// Annotation-audit scenario shared by the Node and browser tests; it mirrors
// tests/audit_native.rs (`small_audit`) so the results can be compared with the native build's.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { root } from './helpers.mjs';

export const AUDIT_DATA = { nCells: 300, nGenes: 100, nClasses: 3, seed: 21 };
export const AUDIT = { train: { n_epochs: 6, batch_size: 64, lr: 0.01, seed: 4 } };

/** Runs in the page or in Node: the `sclabel` module is passed in. */
export async function syntheticAudit(sclabel, backend, { AUDIT_DATA, AUDIT }) {
  const sl = await sclabel.open({ backend });
  const data = await sl.synthetic(AUDIT_DATA);
  const progress = [];
  const r = await sl.audit(data, AUDIT, { onProgress: (p) => progress.push(p.phase) });
  sl.close();
  return {
    backend: sl.backend.backend,
    conf: Array.from(r.conf),
    var: Array.from(r.var),
    cells: r.cells.length,
    categories: [...new Set(r.category)],
    corrected: r.corrected_label.length,
    genes: r.gene_scores.genes.length,
    highIsFloat32: r.gene_scores.conf_score_high instanceof Float32Array,
    cutoffs: r.cutoffs,
    sawTraining: progress.includes('train'),
  };
}

export function nativeAudit() {
  const file = join(root, 'target', 'tmp', 'native_audit.json');
  assert.ok(existsSync(file), `${file} is written by \`cargo test\` (tests/audit_native.rs); run it first`);
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** Checks a wasm run against the native one; returns the largest |Δconf| and |Δvar|. */
export function compareAudit(out, tolerance) {
  const native = nativeAudit();
  assert.equal(out.cells, 300);
  assert.equal(out.corrected, 300);
  assert.ok(out.genes > 0 && out.highIsFloat32 && out.sawTraining);
  let dc = 0;
  let dv = 0;
  for (let i = 0; i < native.conf.length; i++) {
    dc = Math.max(dc, Math.abs(out.conf[i] - native.conf[i]));
    dv = Math.max(dv, Math.abs(out.var[i] - native.var[i]));
  }
  assert.ok(dc < tolerance && dv < tolerance, `max |Δconf| ${dc}, |Δvar| ${dv} ≥ ${tolerance}`);
  return { dc, dv };
}
