// The demo's "view in Vitessce" page: Vitessce (@vitessce/all) with sclabel's view registered as a
// plugin view type, on an AnnData-Zarr the user names (a URL) or picks (a zip, handed to Vitessce
// as a store, so nothing is uploaded). The example is PBMC 3k (scripts/build-vitessce-example.mjs).
import { createElement as h } from 'react';
import { createRoot } from 'react-dom/client';
import { PluginAsyncFunction, Vitessce } from '@vitessce/all';
import { sclabelViewType } from 'sclabel/vitessce';
import { ZipFileStore, transformEntriesForZipFileStore } from 'vitessce-zip-store';

const $ = (id) => document.getElementById(id);
// Created once: Vitessce compares plugin view types by identity.
const pluginViewTypes = [sclabelViewType({ registry: new URL('data/atlases.json', location.href).href })];
// Vitessce's gene views map Ensembl IDs to symbols with a table they fetch from data-1.vitessce.io;
// this page requests nothing beyond its own files and the data set, so genes keep the names the
// data set gives them.
const pluginAsyncFunctions = [new PluginAsyncFunction('getTermMapping', async () => new Map())];
const root = createRoot($('vitessce'));

/** A Vitessce config for one AnnData-Zarr: its embedding, its cell sets, a gene list and sclabel's view. */
function configFor({ url, zip = false, name, embedding, sets }) {
  const options = { obsFeatureMatrix: { path: 'X' } };
  if (embedding) options.obsEmbedding = [{ path: `obsm/${embedding}`, embeddingType: embedding.replace(/^X_/, '').toUpperCase(), dims: [0, 1] }];
  if (sets) options.obsSets = [{ name: sets, path: `obs/${sets}` }];
  const embeddingType = options.obsEmbedding?.[0].embeddingType;
  return {
    version: '1.0.17',
    name,
    initStrategy: 'auto',
    datasets: [{ uid: 'data', name, files: [{ fileType: zip ? 'anndata.zarr.zip' : 'anndata.zarr', url, options }] }],
    coordinationSpace: embeddingType ? { embeddingType: { E: embeddingType } } : {},
    layout: [
      ...(embeddingType ? [{ component: 'scatterplot', coordinationScopes: { embeddingType: 'E' }, x: 0, y: 0, w: 6, h: 8 }] : []),
      { component: 'obsSets', x: 6, y: 0, w: 3, h: 4 },
      { component: 'featureList', x: 6, y: 4, w: 3, h: 4 },
      { component: 'sclabel', x: 9, y: 0, w: 3, h: 8 },
    ],
  };
}

function show() {
  const file = $('zip').files[0];
  const embedding = $('embedding').value.trim();
  const sets = $('sets').value.trim();
  // A picked zip is read where it lies (zarrita's zip store over the File); its "URL" only keys the store.
  const url = file ? `${location.origin}/local/${encodeURIComponent(file.name)}` : new URL($('url').value.trim(), location.href).href;
  const stores = file ? { [url]: ZipFileStore.fromBlob(file, { transformEntries: transformEntriesForZipFileStore }) } : undefined;
  const config = configFor({ url, zip: Boolean(file), name: file?.name ?? $('url').value.trim(), embedding, sets });
  window.vitessceConfig = config; // the latest config, as Vitessce reports it (tests read the cell sets here)
  root.render(h(Vitessce, {
    key: url, config, stores, pluginViewTypes, pluginAsyncFunctions, theme: 'light', height: 800,
    onConfigChange: (c) => { window.vitessceConfig = c; },
  }));
  $('note').textContent = `Showing ${config.name}. In the sclabel view, choose an atlas and press “Transfer labels”.`;
}

$('open').addEventListener('submit', (e) => {
  e.preventDefault();
  show();
});
show();
