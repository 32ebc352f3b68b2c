// react-dom/client for the Vitessce page, by name (CommonJS, as react.js).
import client from 'react-dom/client';

export const { createRoot, hydrateRoot } = client;
