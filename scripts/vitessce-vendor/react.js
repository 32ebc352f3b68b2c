// React for the Vitessce page, by name: React ships CommonJS, whose names a bundled ES module
// cannot re-export with `export *`.
import React from 'react';

export default React;
export const {
  Children, Component, Fragment, PureComponent, StrictMode, Suspense, cloneElement, createContext, createElement,
  createRef, forwardRef, isValidElement, lazy, memo, startTransition, use, useCallback, useContext, useDebugValue,
  useDeferredValue, useEffect, useId, useImperativeHandle, useInsertionEffect, useLayoutEffect, useMemo, useReducer,
  useRef, useState, useSyncExternalStore, useTransition, version,
} = React;
