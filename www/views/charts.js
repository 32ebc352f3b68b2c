// The demo's small plots, each an SVG string built from plain arrays (so every plot exports as SVG
// as drawn, and as PNG through export.js). No state: the page rebuilds a plot when its inputs change.

/** 20 categorical colours (Tableau 10 + its light variants), then grey for "other". */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7',
  '#9c755f', '#bab0ac', '#a0cbe8', '#ffbe7d', '#ff9d9a', '#86bcb6', '#8cd17d', '#f1ce63', '#d4a6c8', '#fabfd2',
  '#d7b5a6', '#79706e'];
export const categoryColor = (k) => (k < PALETTE.length ? PALETTE[k] : '#bbbbbb');

/** Viridis at t ∈ [0, 1] (8 stops, linearly interpolated) as #rrggbb. */
const VIRIDIS = [[68, 1, 84], [70, 50, 127], [54, 92, 141], [39, 127, 142], [31, 161, 135], [74, 194, 109], [159, 218, 58], [253, 231, 37]];
export function viridis(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - i;
  const c = VIRIDIS[i].map((v, j) => Math.round(v + f * (VIRIDIS[i + 1][j] - v)));
  return `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

/** Text for HTML / SVG markup (labels, gene and file names come from the user's data). */
export const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const svg = (w, h, body, label) =>
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="${esc(label)}" font-family="system-ui, sans-serif" font-size="11"><rect width="${w}" height="${h}" fill="#fff"/>${body}</svg>`;
const fmt = (v, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : '–');

/**
 * One confidence histogram per class (rows), of the cells whose most probable class it is
 * (Unassigned cells included: the histogram shows where the threshold cuts).
 * `classes`: names; `predicted`: argmax class index per cell; `confidence`: max probability per cell.
 */
export function confidenceHistograms(classes, predicted, confidence, { bins = 20, threshold = null } = {}) {
  const rowH = 34, left = 190, width = 300, w = left + width + 70;
  const counts = classes.map(() => new Array(bins).fill(0));
  const totals = new Array(classes.length).fill(0);
  for (let i = 0; i < confidence.length; i++) {
    const k = predicted[i];
    if (!(k >= 0 && k < classes.length)) continue;
    counts[k][Math.min(bins - 1, Math.floor(confidence[i] * bins))]++;
    totals[k]++;
  }
  const h = 28 + rowH * classes.length + 24;
  let body = `<text x="${left}" y="14" font-weight="600">confidence of the cells predicted as each class</text>`;
  classes.forEach((name, k) => {
    const y0 = 24 + k * rowH, max = Math.max(1, ...counts[k]);
    body += `<text x="${left - 8}" y="${y0 + rowH - 12}" text-anchor="end">${esc(name)}</text>`;
    body += `<line x1="${left}" x2="${left + width}" y1="${y0 + rowH - 6}" y2="${y0 + rowH - 6}" stroke="#cbd5e0"/>`;
    counts[k].forEach((c, b) => {
      if (!c) return;
      const bh = ((rowH - 10) * c) / max;
      body += `<rect class="bar" x="${left + (b * width) / bins + 0.5}" y="${y0 + rowH - 6 - bh}" width="${width / bins - 1}" height="${bh}" fill="${categoryColor(k)}"><title>${esc(name)}: ${c} cells with confidence ${(b / bins).toFixed(2)}–${((b + 1) / bins).toFixed(2)}</title></rect>`;
    });
    body += `<text x="${left + width + 8}" y="${y0 + rowH - 12}" fill="#4a5568">n = ${totals[k]}</text>`;
  });
  const yAxis = 24 + rowH * classes.length;
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    body += `<text x="${left + t * width}" y="${yAxis + 12}" text-anchor="middle" fill="#4a5568">${t}</text>`;
  }
  if (threshold != null) {
    const x = left + threshold * width;
    body += `<line x1="${x}" x2="${x}" y1="20" y2="${yAxis}" stroke="#c53030" stroke-dasharray="3 3"><title>low-confidence threshold ${threshold}</title></line>`;
  }
  return svg(w, h, body, 'confidence histogram per predicted class');
}

/**
 * Row-normalised confusion matrix: rows = the query's own labels (or another labelling), columns =
 * predicted labels; `rowsAre` / `colsAre` name the two in the title.
 */
export function confusionMatrix(trueLabels, predictedLabels, { rowsAre = 'query labels', colsAre = 'predicted' } = {}) {
  const rows = [...new Set(trueLabels.filter((v) => v != null))].sort();
  // Columns follow the rows where names agree (agreement on the diagonal), then the rest, Unassigned last.
  const predicted = new Set(predictedLabels);
  const cols = [...rows.filter((r) => predicted.has(r)), ...[...predicted].filter((c) => !rows.includes(c) && c !== 'Unassigned').sort(),
    ...(predicted.has('Unassigned') ? ['Unassigned'] : [])];
  const ri = new Map(rows.map((r, i) => [r, i])), ci = new Map(cols.map((c, i) => [c, i]));
  const m = rows.map(() => new Array(cols.length).fill(0));
  let agree = 0, n = 0;
  trueLabels.forEach((t, i) => {
    if (t == null) return;
    m[ri.get(t)][ci.get(predictedLabels[i])]++;
    n++;
    if (t === predictedLabels[i]) agree++;
  });
  const cell = 30, left = 200, top = 150;
  const w = left + cols.length * cell + 80, h = top + rows.length * cell + 30;
  let body = `<text x="8" y="14" font-weight="600">${esc(rowsAre)} (rows) × ${esc(colsAre)} (columns); identical names agree on ${fmt(agree / Math.max(1, n), 3)} of ${n} cells</text>`;
  cols.forEach((c, j) => {
    body += `<text transform="translate(${left + j * cell + cell / 2 + 4},${top - 6}) rotate(-55)">${esc(c)}</text>`;
  });
  rows.forEach((r, i) => {
    const total = m[i].reduce((a, b) => a + b, 0);
    body += `<text x="${left - 6}" y="${top + i * cell + cell / 2 + 4}" text-anchor="end">${esc(r)}</text>`;
    m[i].forEach((c, j) => {
      const f = total ? c / total : 0;
      body += `<rect class="cell" x="${left + j * cell}" y="${top + i * cell}" width="${cell - 1}" height="${cell - 1}" fill="${c ? viridis(f) : '#f7fafc'}"><title>${esc(r)} → ${esc(cols[j])}: ${c} cells (${fmt(100 * f, 1)}% of the row)</title></rect>`;
      if (c) body += `<text x="${left + j * cell + cell / 2}" y="${top + i * cell + cell / 2 + 4}" text-anchor="middle" fill="${f > 0.6 ? '#000' : '#fff'}" font-size="9">${c}</text>`;
    });
    body += `<text x="${left + cols.length * cell + 6}" y="${top + i * cell + cell / 2 + 4}" fill="#4a5568">${total}</text>`;
  });
  return { svg: svg(w, h, body, 'confusion matrix'), agreement: agree / Math.max(1, n), n };
}

const CATEGORY_COLORS = { 'easy-to-learn': '#2f855a', ambiguous: '#d69e2e', 'hard-to-learn': '#c53030' };

/**
 * Annotatability's data map: confidence (y) against variability (x), one dot per audited cell,
 * coloured by category, with the trusted cutoffs. SVG stays light by drawing at most `maxPoints`
 * cells (an even-stride sample, stated on the plot).
 */
export function dataMap(audit, { maxPoints = 6000 } = {}) {
  const n = audit.conf.length, stride = Math.max(1, Math.ceil(n / maxPoints));
  const left = 50, top = 30, pw = 420, ph = 320, w = left + pw + 150, h = top + ph + 45;
  const maxVar = audit.var.reduce((a, b) => Math.max(a, b), 0.5);
  const X = (v) => left + (v / maxVar) * pw, Y = (c) => top + (1 - c) * ph;
  let body = `<text x="${left}" y="16" font-weight="600">data map of the reference's labels (${stride > 1 ? `every ${stride}th of ` : ''}${n} cells)</text>`;
  body += `<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#cbd5e0"/>`;
  for (let i = 0; i < n; i += stride) {
    body += `<circle class="dot" cx="${X(audit.var[i]).toFixed(1)}" cy="${Y(audit.conf[i]).toFixed(1)}" r="2.2" fill="${CATEGORY_COLORS[audit.category[i]] ?? '#999'}" fill-opacity="0.7"/>`;
  }
  const { confidence, variability } = audit.cutoffs;
  body += `<line x1="${left}" x2="${left + pw}" y1="${Y(confidence)}" y2="${Y(confidence)}" stroke="#4a5568" stroke-dasharray="4 3"/>`;
  body += `<line x1="${X(variability)}" x2="${X(variability)}" y1="${top}" y2="${top + ph}" stroke="#4a5568" stroke-dasharray="4 3"/>`;
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    body += `<text x="${left - 6}" y="${Y(t) + 4}" text-anchor="end" fill="#4a5568">${t}</text>`;
    body += `<text x="${X(t * maxVar)}" y="${top + ph + 14}" text-anchor="middle" fill="#4a5568">${fmt(t * maxVar)}</text>`;
  }
  body += `<text x="${left + pw / 2}" y="${top + ph + 32}" text-anchor="middle">variability</text>`;
  body += `<text transform="translate(14,${top + ph / 2}) rotate(-90)" text-anchor="middle">confidence</text>`;
  const counts = {};
  audit.category.forEach((c) => { counts[c] = (counts[c] ?? 0) + 1; });
  Object.entries(CATEGORY_COLORS).forEach(([name, color], i) => {
    body += `<circle cx="${left + pw + 18}" cy="${top + 10 + i * 20}" r="5" fill="${color}"/><text x="${left + pw + 28}" y="${top + 14 + i * 20}">${name} (${counts[name] ?? 0})</text>`;
  });
  return svg(w, h, body, 'Annotatability data map');
}

/** Horizontal bars of the `top` highest values: `names[i]` with `values[i]`. */
export function geneBars(title, names, values, { top = 20, color = '#4e79a7' } = {}) {
  const order = Array.from(values.keys()).filter((i) => Number.isFinite(values[i])).sort((a, b) => values[b] - values[a]).slice(0, top);
  const rowH = 16, left = 90, bw = 220, w = left + bw + 70, h = 26 + order.length * rowH + 6;
  const max = Math.max(1e-12, ...order.map((i) => Math.abs(values[i])));
  let body = `<text x="8" y="14" font-weight="600">${esc(title)}</text>`;
  order.forEach((i, r) => {
    const y = 22 + r * rowH, len = (Math.abs(values[i]) / max) * bw;
    body += `<text x="${left - 6}" y="${y + 11}" text-anchor="end">${esc(names[i])}</text>`;
    body += `<rect class="bar" x="${left}" y="${y + 2}" width="${len}" height="${rowH - 4}" fill="${values[i] >= 0 ? color : '#a0aec0'}"><title>${esc(names[i])}: ${values[i].toPrecision(3)}</title></rect>`;
    body += `<text x="${left + len + 4}" y="${y + 11}" fill="#4a5568">${values[i].toPrecision(3)}</text>`;
  });
  return svg(w, h, body, title);
}
