// The embedding scatter: a 2-D projection of X_scnym drawn with regl-scatterplot (WebGL, smooth at
// 100k+ points), coloured by a categorical or continuous per-cell value, with a legend and a
// hover card. Exports PNG (the WebGL canvas) and SVG (one circle per cell).
import createScatterplot from 'regl-scatterplot';
import { categoryColor, esc, viridis } from './charts.js';

export class EmbeddingView {
  /** `container` holds a canvas, a legend and a hover card; `describe(i)` → HTML of cell i's card. */
  constructor(container, describe) {
    this.container = container;
    this.describe = describe;
    this.canvas = container.querySelector('canvas');
    this.legend = container.querySelector('.legend');
    this.card = container.querySelector('.hover-card');
    const { width, height } = this.canvas.getBoundingClientRect();
    this.plot = createScatterplot({
      canvas: this.canvas, width, height, pointSize: 4, backgroundColor: '#ffffff',
      opacityBy: 'density', lassoOnLongPress: false, pointColorHover: '#000000',
    });
    this.mouse = [0, 0];
    this.canvas.addEventListener('mousemove', (e) => { this.mouse = [e.offsetX, e.offsetY]; });
    this.plot.subscribe('pointOver', (i) => this.#hover(i));
    this.plot.subscribe('pointOut', () => { this.card.hidden = true; });
    this.xy = null;
    this.rows = null; // cell index of each drawn point (null: point i is cell i)
    this.color = null;
  }

  /** Forgets the points (a new result is coming; its cells are not the old ones). */
  clear() {
    this.xy = null;
    this.rows = null;
    this.card.hidden = true;
    this.plot.clear();
  }

  /**
   * Positions (n × 2, row-major), rescaled into the plot's [-1, 1] square keeping the aspect;
   * `rows` (sorted cell indices, or null for every cell) names the cells drawn when only a sample is.
   */
  async setPositions(xy, rows = null) {
    const n = xy.length / 2;
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (let i = 0; i < n; i++) {
      x0 = Math.min(x0, xy[2 * i]); x1 = Math.max(x1, xy[2 * i]);
      y0 = Math.min(y0, xy[2 * i + 1]); y1 = Math.max(y1, xy[2 * i + 1]);
    }
    const s = 1.9 / Math.max(x1 - x0, y1 - y0, 1e-9), cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const transition = this.xy?.length === xy.length;
    this.rows = rows;
    this.xy = Float32Array.from(xy, (v, k) => (k % 2 ? (v - cy) * s : (v - cx) * s));
    await this.#draw({ transition });
  }

  /**
   * Colours: `{ kind: 'categorical', codes: Int32Array, names }` (code −1 = missing, grey) or
   * `{ kind: 'continuous', values: Float32Array, min, max, name }`.
   */
  async setColor(color) {
    this.color = color;
    await this.#draw({});
    this.#legend();
  }

  async #draw({ transition = false }) {
    if (!this.xy || !this.color) return;
    const n = this.xy.length / 2;
    const x = new Float32Array(n), y = new Float32Array(n), z = new Float32Array(n), w = new Float32Array(n);
    const c = this.color;
    const missing = c.kind === 'categorical' ? c.names.length : 0;
    for (let i = 0; i < n; i++) {
      const cell = this.#cell(i);
      x[i] = this.xy[2 * i];
      y[i] = this.xy[2 * i + 1];
      if (c.kind === 'categorical') z[i] = c.codes[cell] < 0 ? missing : c.codes[cell];
      // Continuous: ramp entry 0 is grey for missing values, the rest viridis.
      else w[i] = Number.isFinite(c.values[cell]) ? (1 + 62 * ((c.values[cell] - c.min) / (c.max - c.min || 1))) / 63 : 0;
    }
    if (c.kind === 'categorical') {
      const colors = c.names.map((_, k) => categoryColor(k)).concat('#d0d0d0');
      this.plot.set({ colorBy: 'valueA', pointColor: colors, pointColorActive: colors });
    } else {
      const ramp = ['#d0d0d0', ...Array.from({ length: 63 }, (_, k) => viridis(k / 62))];
      this.plot.set({ colorBy: 'valueB', pointColor: ramp, pointColorActive: ramp });
    }
    await this.plot.draw({ x, y, valueA: z, valueB: w }, {
      transition, transitionDuration: 400, zDataType: 'categorical', wDataType: 'continuous',
    });
    this.container.dataset.points = String(n);
  }

  /** The cell drawn as point i. */
  #cell(i) {
    return this.rows ? this.rows[i] : i;
  }

  #legend() {
    const c = this.color;
    if (c.kind === 'categorical') {
      const counts = new Array(c.names.length).fill(0);
      c.codes.forEach((k) => { if (k >= 0) counts[k]++; });
      this.legend.innerHTML = c.names.map((name, k) => (counts[k] // names without cells keep their colour, not a legend row
        ? `<li><span class="swatch" style="background:${categoryColor(k)}"></span>${esc(name)} <small>${counts[k]}</small></li>` : '')).join('');
    } else {
      const stops = Array.from({ length: 11 }, (_, k) => viridis(k / 10)).join(',');
      this.legend.innerHTML = `<li>${esc(c.name)}</li><li><span class="ramp" style="background:linear-gradient(90deg,${stops})"></span></li>`
        + `<li><small>${c.min.toPrecision(3)} … ${c.max.toPrecision(3)}</small></li>`;
    }
  }

  #hover(i) {
    if (!this.xy || i >= this.xy.length / 2) return;
    this.card.innerHTML = this.describe(this.#cell(i));
    this.card.style.left = `${this.mouse[0] + 14}px`;
    this.card.style.top = `${this.mouse[1] + 14}px`;
    this.card.hidden = false;
  }

  async png() {
    return this.plot.export({ scale: 2, antiAliasing: 2 });
  }

  /** Every drawn cell as a circle, in the colours on screen (SVG for figures; large for 50k cells). */
  svg() {
    const size = 600, n = this.xy.length / 2, c = this.color;
    const parts = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${size} ${size}" width="${size}" height="${size}"><rect width="${size}" height="${size}" fill="#fff"/>`];
    for (let i = 0; i < n; i++) {
      const cell = this.#cell(i);
      const fill = c.kind === 'categorical'
        ? (c.codes[cell] < 0 ? '#d0d0d0' : categoryColor(c.codes[cell]))
        : Number.isFinite(c.values[cell]) ? viridis((c.values[cell] - c.min) / (c.max - c.min || 1)) : '#d0d0d0';
      parts.push(`<circle cx="${((this.xy[2 * i] + 1) * size / 2).toFixed(1)}" cy="${((1 - this.xy[2 * i + 1]) * size / 2).toFixed(1)}" r="1.6" fill="${fill}"/>`);
    }
    parts.push('</svg>');
    return parts.join('');
  }
}
