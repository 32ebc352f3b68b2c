// zarrita's zip store, so the page can hand Vitessce a zipped AnnData-Zarr the user picks (`stores`).
export { default as ZipFileStore } from '@zarrita/storage/zip';
// Vitessce's own entry naming for zips (a top folder, as `zip -r` makes, is looked through).
export { transformEntriesForZipFileStore } from '@vitessce/zarr-utils';
