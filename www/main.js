// The demo: built only on sclabel's public JS API, as a host application would use it.
import { open } from 'sclabel';

const $ = (id) => document.getElementById(id);
const DEMO_URL = 'data/pbmc68k_reduced.h5ad';
let current = null; // { requested, client: Promise<client> }
let dataset = null; // { client, handle }: a data set belongs to the client (worker) that loaded it
let controller = null;

/** The sclabel client for the chosen backend (its worker owns the data); reopened when the choice changes. */
function client() {
  const requested = $('backend').value;
  if (current?.requested !== requested) {
    const old = current;
    current = { requested, client: open({ backend: requested }) };
    dataset = null;
    old?.client.then((c) => c.close(), () => {});
  }
  return current.client;
}

async function loadDataset() {
  $('summary').textContent = 'Loading…';
  const c = await client();
  let handle;
  if ($('dataset').value === 'demo') {
    handle = await c.load(new URL(DEMO_URL, location.href), { name: 'pbmc68k_reduced.h5ad' });
    $('use-raw').checked = true; // X is scaled (z-scores); .raw holds log-normalised values
  } else {
    const file = $('file').files[0];
    if (!file) { $('file').click(); return; }
    handle = await c.load(file);
    $('use-raw').checked = false;
  }
  if (c !== await client()) return; // the backend changed meanwhile; that load is stale
  dataset = { client: c, handle };
  const summary = handle.summary;
  const categorical = summary.obs.filter((c) => c.kind === 'categorical' || c.kind === 'string');
  $('label-key').replaceChildren(...categorical.map((c) => new Option(c.name, c.name)));
  const preferred = ['bulk_labels', 'cell_type', 'celltype', 'labels'].find((k) => categorical.some((c) => c.name === k));
  if (preferred) $('label-key').value = preferred;
  $('summary').textContent = `${summary.n_obs} cells × ${summary.n_vars} genes. ${summary.normalization?.description ?? ''}`;
}

function drawLoss(history) {
  const svg = $('loss');
  const w = 400, h = 160, pad = 20;
  const losses = history.map((e) => e.loss);
  const max = Math.max(...losses), min = Math.min(0, ...losses);
  const pts = losses.map((l, i) => [pad + (i / Math.max(1, losses.length - 1)) * (w - 2 * pad), h - pad - ((l - min) / (max - min || 1)) * (h - 2 * pad)]);
  svg.innerHTML = `<text x="${pad}" y="14" font-size="11">training loss per epoch (max ${max.toFixed(3)})</text>`
    + `<polyline fill="none" stroke="#2b6cb0" stroke-width="2" points="${pts.map((p) => p.join(',')).join(' ')}"/>`
    + pts.map(([x, y]) => `<circle cx="${x}" cy="${y}" r="2.5" fill="#2b6cb0"/>`).join('');
}

function showPerClass(report) {
  const rows = report.class_names.map((name, k) => {
    const idx = report.test_true.map((t, i) => (t === k ? i : -1)).filter((i) => i >= 0);
    const hits = idx.filter((i) => report.test_predicted[i] === k).length;
    return `<tr><td>${name}</td><td>${idx.length}</td><td>${idx.length ? (hits / idx.length).toFixed(2) : '–'}</td></tr>`;
  });
  $('per-class').innerHTML = `<tr><th>cell type</th><th>held-out cells</th><th>recall</th></tr>${rows.join('')}`;
}

async function train() {
  $('train').disabled = true;
  $('cancel').disabled = false;
  $('result').dataset.state = 'running';
  controller = new AbortController();
  const started = performance.now();
  try {
    const session = await client();
    if (dataset?.client !== session) await loadDataset();
    const info = session.backend;
    const gpu = info.backend === 'webgpu';
    $('backend-badge').textContent = gpu ? `WebGPU${info.adapter ? ` · ${info.adapter}` : ''}` : `CPU (${info.backend})`;
    $('backend-badge').className = `badge ${gpu ? 'gpu' : 'cpu'}`;
    $('backend-badge').title = info.reason;
    const epochs = Number($('epochs').value);
    const report = await session.trainHoldout(dataset.handle, {
      label_key: $('label-key').value,
      use_raw: $('use-raw').checked,
      train: { epochs, learning_rate: 0.01, seed: 0 },
    }, {
      signal: controller.signal,
      onProgress: (p) => {
        const done = p.phase === 'train' ? (p.epoch + p.step / p.steps_per_epoch) / p.n_epochs : 1;
        $('progress').value = done;
        const elapsed = (performance.now() - started) / 1000;
        const eta = done > 0 ? elapsed * (1 / done - 1) : NaN;
        $('progress-text').textContent = `${p.phase} · epoch ${p.epoch + 1}/${p.n_epochs}`
          + (p.loss !== null ? ` · loss ${p.loss.toFixed(3)}` : '') + (Number.isFinite(eta) ? ` · ETA ${eta.toFixed(0)} s` : '');
      },
    });
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    $('summary').textContent = `Held-out accuracy ${(100 * report.test_accuracy).toFixed(1)}% on ${report.n_test} cells `
      + `(always guessing the commonest type: ${(100 * report.majority_accuracy).toFixed(1)}%), trained on ${report.n_train} cells `
      + `× ${report.n_genes} genes in ${secs} s on ${gpu ? 'WebGPU' : 'the CPU'}.`;
    drawLoss(report.history);
    showPerClass(report);
    $('result').dataset.accuracy = String(report.test_accuracy);
    $('result').dataset.state = 'done';
  } catch (e) {
    showError(e);
    $('result').dataset.state = 'error';
  } finally {
    $('train').disabled = false;
    $('cancel').disabled = true;
  }
}

$('dataset').addEventListener('change', () => { dataset = null; if ($('dataset').value === 'file') $('file').click(); else loadDataset().catch(showError); });
$('file').addEventListener('change', () => { dataset = null; loadDataset().catch(showError); });
$('train').addEventListener('click', train);
$('cancel').addEventListener('click', () => controller?.abort());

function showError(e) {
  if (e.code === 'closed') return; // a client replaced after a backend change; nothing went wrong
  const text = e.code === 'cancelled' ? 'Cancelled.' : `Error${e.code ? ` (${e.code})` : ''}: ${e.message}`;
  const span = Object.assign(document.createElement('span'), { className: 'error', textContent: text });
  $('summary').replaceChildren(span);
}

loadDataset().catch(showError);
