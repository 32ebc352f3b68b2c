import { test } from 'node:test';
import assert from 'node:assert/strict';
import { obsSetsSchema } from '@vitessce/schemas';
import { open, toVitessceCellSets, toVitessceConfidenceSets } from 'sclabel';

test("a prediction as Vitessce cell sets: valid against Vitessce's own obsSets schema, every cell in its label's set with its confidence", async () => {
  const sl = await open({ backend: 'cpu' });
  const data = await sl.synthetic({ nCells: 300, nGenes: 60, nClasses: 3, seed: 2 });
  const model = await sl.trainScnym(data, null, { label_key: 'cell_type', normalize: true, config: { n_epochs: 5, seed: 1 } });
  // Half the cells below the median confidence become 'Unassigned': a label that is not a class.
  const first = await sl.predictScnym(model, data, { normalize: true });
  const median = [...first.scNym_confidence].sort((a, b) => a - b)[150];
  const p = await sl.predictScnym(model, data, { normalize: true, unassigned_below: median });
  const names = await sl.obsNames(data);
  sl.close();
  const sets = toVitessceCellSets(p, names, { colors: { [p.classes[0]]: [1, 2, 3] } });
  const checked = obsSetsSchema.safeParse(sets);
  assert.ok(checked.success, JSON.stringify(checked.error?.issues?.slice(0, 3)));
  const [parent] = sets.tree;
  assert.equal(parent.name, 'sclabel scNym');
  const expected = [...p.classes, 'Unassigned'].filter((l) => p.scNym.includes(l));
  assert.deepEqual(parent.children.map((c) => c.name), expected);
  assert.ok(p.scNym.includes('Unassigned') && expected.length >= 2, expected.join(', '));
  const colored = parent.children.find((c) => c.name === p.classes[0]);
  if (colored) assert.deepEqual(colored.color, [1, 2, 3]);
  const where = new Map(parent.children.flatMap((c) => c.set.map(([cell, score]) => [cell, [c.name, score]])));
  assert.equal(where.size, 300);
  names.forEach((cell, i) => assert.deepEqual(where.get(cell), [p.scNym[i], p.scNym_confidence[i]]));
  assert.throws(() => toVitessceCellSets(p, names.slice(1)), (e) => e.code === 'invalid_option' && /299 obs names for 300/.test(e.message));

  // The confidence in bands (what a viewer that colours by set selection can colour by): valid,
  // every cell in the band its confidence falls in, scored by it.
  const bands = toVitessceConfidenceSets(p, names, { edges: [0.4, 0.8] });
  const bandsChecked = obsSetsSchema.safeParse(bands);
  assert.ok(bandsChecked.success, JSON.stringify(bandsChecked.error?.issues?.slice(0, 3)));
  const band = new Map(bands.tree[0].children.flatMap((c) => c.set.map(([cell, score]) => [cell, [c.name, score]])));
  assert.equal(band.size, 300);
  names.forEach((cell, i) => {
    const c = p.scNym_confidence[i];
    assert.deepEqual(band.get(cell), [c < 0.4 ? 'confidence < 0.4' : c < 0.8 ? '0.4 ≤ confidence < 0.8' : 'confidence ≥ 0.8', c]);
  });
  assert.throws(() => toVitessceConfidenceSets(p, names, { edges: [0.8, 0.4] }), (e) => e.code === 'invalid_option' && /ascending/.test(e.message));
});

/**
 * CSV as CELLxGENE reads its annotations (pandas read_csv with comment='#', header=0, index_col=0,
 * keep_default_na=False): text after '#' dropped, lines left empty skipped, quoted fields unquoted.
 */
function readAsCellxgene(text) {
  const rows = [];
  for (const raw of text.split('\n')) {
    const line = raw.split('#')[0];
    if (line.trim() === '') continue;
    const fields = [];
    for (let i = 0, field = '', quoted = false; i <= line.length; i++) {
      const c = line[i];
      if (quoted && c === '"' && line[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = !quoted;
      else if ((c === ',' && !quoted) || i === line.length) { fields.push(field); field = ''; } else field += c;
    }
    rows.push(fields);
  }
  const [header, ...body] = rows;
  return { columns: header.slice(1), index: body.map((r) => r[0]), values: body.map((r) => r.slice(1)) };
}

test('labels as a CELLxGENE annotations CSV read back as CELLxGENE reads them; a # is refused', async () => {
  const { toCellxgeneAnnotations } = await import('sclabel');
  const cells = ['AAAC-1', 'AAAG-1', 'c,3'];
  const text = toCellxgeneAnnotations({ scNym: ['B cell', null, 'T "naive", CD4'], sclabel_audit: ['easy-to-learn', 'hard-to-learn', 'ambiguous'] }, cells);
  assert.match(text, /^# Annotations generated on \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d using sclabel\n/);
  const back = readAsCellxgene(text);
  assert.deepEqual(back.columns, ['scNym', 'sclabel_audit']);
  assert.deepEqual(back.index, cells);
  assert.deepEqual(back.values, [['B cell', 'easy-to-learn'], ['unassigned', 'hard-to-learn'], ['T "naive", CD4', 'ambiguous']]);
  assert.throws(() => toCellxgeneAnnotations({ scNym: ['CD4+ #1'] }, ['a']), (e) => e.code === 'invalid_values' && /'CD4\+ #1' holds '#'/.test(e.message));
  assert.throws(() => toCellxgeneAnnotations({ scNym: ['x'] }, ['a', 'b']), (e) => e.code === 'invalid_option');
});

/** A meta.tsv as the Cell Browser's cbBuild reads it (cellbrowser 1.2.16 `parseIntoColumns` / `lineFileNextRow`): tab-split lines, '#' lines skipped. */
function readAsCellBrowser(text) {
  const lines = text.split('\n').filter((l) => l !== '');
  const header = lines[0].split('\t').map((h) => h.split('|')[0]);
  const rows = lines.slice(1).filter((l) => !l.startsWith('#')).map((l) => l.replace(/\r$/, '').split('\t'));
  return { header, rows };
}

test('result columns as a Cell Browser meta.tsv read back as cbBuild reads them; tabs and comment-like names refused', async () => {
  const { toCellBrowserMeta } = await import('sclabel');
  const cells = ['AAAC-1', 'AAAG-1', 'c 3'];
  const text = toCellBrowserMeta({ scNym: ['B cell', null, 'T "naive", CD4'], scNym_confidence: new Float32Array([0.5, NaN, 0.25]) }, cells);
  const back = readAsCellBrowser(text);
  assert.deepEqual(back.header, ['cellId', 'scNym', 'scNym_confidence']);
  assert.deepEqual(back.rows, [['AAAC-1', 'B cell', '0.5'], ['AAAG-1', '', ''], ['c 3', 'T "naive", CD4', '0.25']]);
  assert.throws(() => toCellBrowserMeta({ scNym: ['a\tb', 'x', 'y'] }, cells), (e) => e.code === 'invalid_values' && /tab or a line break/.test(e.message));
  assert.throws(() => toCellBrowserMeta({ scNym: ['a', 'b', 'c'] }, ['#1', 'x', 'y']), (e) => e.code === 'invalid_values' && /comment/.test(e.message));
  assert.throws(() => toCellBrowserMeta({ scNym: ['a'] }, cells), (e) => e.code === 'invalid_option' && /1 values for 3 cells/.test(e.message));
});

test("labels as CELLxGENE's cell_type_ontology_term_id from an atlas's Cell Ontology IDs; 'unknown' without one; bad IDs refused", async () => {
  const { readFileSync, existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { toCellxgeneSchemaColumns } = await import('sclabel');
  const { root } = await import('./helpers.mjs');
  const file = join(root, 'www', 'data', 'atlases', 'pbmc68k-reduced', 'atlas.json');
  const manifest = existsSync(file)
    ? JSON.parse(readFileSync(file, 'utf8'))
    : { classes: [{ label: 'CD19+ B', ontology_id: 'CL:0000236' }, { label: 'Dendritic', ontology_id: 'CL:0000451' }] };
  const { cell_type_ontology_term_id: ids } = toCellxgeneSchemaColumns(['CD19+ B', 'Unassigned', 'Dendritic', null], manifest);
  assert.deepEqual(ids, ['CL:0000236', 'unknown', 'CL:0000451', 'unknown']);
  // The schema's form: a CL term or 'unknown' (cellxgene-schema 7.1.2's curie constraint for this column).
  assert.ok(ids.every((id) => /^CL:\d{7}$/.test(id) || id === 'unknown'));
  assert.throws(() => toCellxgeneSchemaColumns(['B'], { classes: [{ label: 'B', ontology_id: 'B cell' }] }), (e) => e.code === 'invalid_file' && /not a Cell Ontology term/.test(e.message));
  assert.throws(() => toCellxgeneSchemaColumns(['x'], { classes: [{ label: 'x', ontology_id: 'CL:0000548' }] }), (e) => e.code === 'invalid_file' && /forbids/.test(e.message));
});
