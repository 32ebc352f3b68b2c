// esbuild entry for pkg/vendor/zarrita.js (see scripts/build-wasm.sh): zarrita's API, its HTTP
// store (re-exported by zarrita as FetchStore) and the zip store, for src/js/zarr.js. Bundled for
// the browser; @zarrita/storage's FileSystemStore stays out (it imports node:fs; in Node, pass
// readZarr a store object).
export * from 'zarrita';
export { default as ZipFileStore } from '@zarrita/storage/zip';
