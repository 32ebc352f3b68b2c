import { test } from 'node:test';
import assert from 'node:assert/strict';
import { obsSetsSchema } from '@vitessce/schemas';
import { open, toVitessceCellSets } from 'sclabel';

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
});
