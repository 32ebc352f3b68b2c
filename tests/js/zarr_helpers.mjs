// Zarr stores for the Node tests of readZarr (tests/js/zarr.test.mjs): a store over a directory on
// disk, the browser's directory sources mocked over node:fs, and a writer of small uncompressed
// zarr v2 AnnData stores in memory (scripts/lib/anndata-zarr.mjs; for synthetic and deliberately broken data sets).
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';

/** A zarrita-compatible store over a store directory (what @zarrita/storage's FileSystemStore does). */
export function directoryStore(dir) {
  return {
    async get(key) {
      try {
        // A copy with its own ArrayBuffer: zarrita decodes some chunks from `bytes.buffer`.
        return new Uint8Array(await readFile(join(dir, ...key.split('/').filter(Boolean))));
      } catch (e) {
        if (e.code === 'ENOENT' || e.code === 'EISDIR') return undefined;
        throw e;
      }
    },
  };
}

/** Every file under `dir`, as `[path relative to dir with '/', absolute path]`. */
async function walk(dir, top = dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(full, top)));
    else out.push([relative(top, full).split(sep).join('/'), full]);
  }
  return out;
}

/**
 * Files as `<input type=file webkitdirectory>` gives them for `dir`: each File's
 * webkitRelativePath starts with the chosen folder's name (`pbmc.zarr/X/zarr.json`).
 */
export async function directoryFiles(dir, { extra = [] } = {}) {
  const top = basename(dir);
  const files = [];
  for (const [rel, full] of await walk(dir)) {
    const f = new File([await readFile(full)], basename(full));
    Object.defineProperty(f, 'webkitRelativePath', { value: `${top}/${rel}` });
    files.push(f);
  }
  for (const [path, text] of extra) {
    const f = new File([text], basename(path));
    Object.defineProperty(f, 'webkitRelativePath', { value: path });
    files.push(f);
  }
  return files;
}

const domError = (name) => Object.assign(new Error(`${name} (mock)`), { name });

/** A FileSystemDirectoryHandle look-alike over `dir` (the parts readZarr uses). */
export function directoryHandle(dir) {
  const child = async (name, wantDir) => {
    const p = join(dir, name);
    const s = await stat(p).catch(() => null);
    if (!s) throw domError('NotFoundError');
    if (s.isDirectory() !== wantDir) throw domError('TypeMismatchError');
    return p;
  };
  return {
    kind: 'directory',
    name: basename(dir),
    async getDirectoryHandle(name) {
      return directoryHandle(await child(name, true));
    },
    async getFileHandle(name) {
      const p = await child(name, false);
      return { kind: 'file', name, getFile: async () => new File([await readFile(p)], name) };
    },
  };
}

export { MemoryStore, anndataStore } from '../../scripts/lib/anndata-zarr.mjs';

/** Seeded uniform numbers in [0, 1) (mulberry32), so synthetic data sets repeat. */
export function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random CSR matrix as typed arrays (about `density` of the entries stored, values 1..10). */
export function randomCsr(nRows, nCols, density, seed) {
  const next = random(seed);
  const indptr = new Int32Array(nRows + 1);
  const indices = [];
  const data = [];
  for (let i = 0; i < nRows; i++) {
    for (let j = 0; j < nCols; j++) {
      if (next() < density) {
        indices.push(j);
        data.push(1 + Math.floor(next() * 10));
      }
    }
    indptr[i + 1] = indices.length;
  }
  return { indptr, indices: Int32Array.from(indices), data: Float32Array.from(data) };
}
