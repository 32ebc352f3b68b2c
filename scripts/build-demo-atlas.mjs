// The demo's atlas: scanpy's PBMC 68k reduced (700 cells, 10 `bulk_labels`, log-normalised .raw;
// BSD-3, extracted from the scanpy wheel by setup.sh) built into an atlas package with the
// package's own buildAtlas (the same core as `sclabel atlas build`), plus the registry the demo
// lists atlases from. Output under www/data/ (ignored); rebuilt when the source or the package is newer.
import { mkdirSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from 'sclabel';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'www/data/pbmc68k_reduced.h5ad');
const id = 'pbmc68k-reduced';
const out = join(root, 'www/data/atlases', id);
const registry = join(root, 'www/data/atlases.json');
const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);
if (mtime(join(out, 'atlas.json')) > Math.max(mtime(source), mtime(join(root, 'pkg/sclabel_wasm_cpu_bg.wasm'))) && existsSync(registry)) {
  console.log(`demo atlas up to date: ${out}`);
  process.exit(0);
}
const started = performance.now();
const sl = await open({ backend: 'cpu' });
try {
  const data = await sl.load(source);
  const built = await sl.buildAtlas(data, {
    id,
    name: 'PBMC 68k (reduced), 10 sorted-population labels',
    species: 'human',
    tissue: 'peripheral blood',
    license: 'BSD-3-Clause (scanpy)',
    source: 'scanpy 1.11.5 wheel, scanpy/datasets/10x_pbmc68k_reduced.h5ad (Zheng et al. 2017, 10x Genomics PBMC 68k; labels from bulk-sorted profiles, known to be noisy)',
    label_key: 'bulk_labels',
    use_raw: true,
    normalize: true,
    values: 'q8',
    config: { n_epochs: 60 },
    ontology: {
      'CD14+ Monocyte': 'CL:0001054',
      'CD19+ B': 'CL:0000236',
      'CD34+': 'CL:0000837',
      'CD4+/CD25 T Reg': 'CL:0000815',
      'CD4+/CD45RA+/CD25- Naive T': 'CL:0000895',
      'CD4+/CD45RO+ Memory': 'CL:0000897',
      'CD56+ NK': 'CL:0000623',
      'CD8+ Cytotoxic T': 'CL:0000625',
      'CD8+/CD45RA+ Naive Cytotoxic': 'CL:0000900',
      Dendritic: 'CL:0000451',
    },
  });
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, built.manifest.files.matrix.path), built.matrix);
  writeFileSync(join(out, built.manifest.files.model.path), built.model);
  writeFileSync(join(out, 'atlas.json'), JSON.stringify(built.manifest, null, 2));
  writeFileSync(registry, JSON.stringify({
    format: 'sclabel-registry',
    version: 1,
    atlases: [{ id, version: built.manifest.files.model.sha256.slice(0, 12), name: built.manifest.name, species: 'human', tissue: 'peripheral blood', manifest: `atlases/${id}/atlas.json` }],
  }, null, 2));
  for (const w of built.warnings) console.warn(`warning: ${w}`);
  console.log(`demo atlas built in ${((performance.now() - started) / 1000).toFixed(1)} s: ${built.manifest.n_cells} cells × ${built.manifest.n_genes} genes, `
    + `matrix ${built.matrix.length} B, model ${built.model.length} B → ${out}`);
} finally {
  sl.close();
}
