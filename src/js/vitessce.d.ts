// Types of the Vitessce view (src/js/vitessce.js).
import type { AuditResult, Registry, Sclabel, ScnymPrediction } from './index.js';

export interface SclabelViewOptions {
  /** The component name a config's layout uses (default 'sclabel'). */
  name?: string;
  /** An atlases.json (URL) or a loaded registry: its atlases are offered as references. */
  registry?: string | URL | Registry | null;
  /** An opened sclabel client to share; otherwise the view opens its own with `backend`. */
  client?: Sclabel | null;
  backend?: 'auto' | 'webgpu' | 'cpu';
  /** Called after each run with what was shown. */
  onResult?: (result: { prediction: ScnymPrediction; audit: AuditResult | null; obsNames: string[] }) => void;
}

/** The sclabel view type for `<Vitessce pluginViewTypes={[sclabelViewType(…)]} />` (from `@vitessce/all`). */
export function sclabelViewType(options?: SclabelViewOptions): unknown;
/** The coordination types the view reads and sets. */
export const SCLABEL_COORDINATION_TYPES: string[];
