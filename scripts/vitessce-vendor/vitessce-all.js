// Vitessce's component and plugin API, unbundled: it shares @vitessce/vit-s (and so the React
// contexts its data hooks read) with vit-s.js, which the `vitessce` package's prebuilt bundle would not.
export * from '@vitessce/all';
