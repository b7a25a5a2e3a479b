import type { StoreKind } from '../server/config.js';
import type { FigureLog } from './figures.js';
import { type FaultTarget, FRAMEWORKS } from './targets.js';

/** What every scenario module gets from its store's test file. */
export interface ScenarioContext {
  kind: StoreKind;
  target(): FaultTarget;
  figures: FigureLog;
}

let sequence = 0;
/** A client key no other run uses. */
export function uniqueKey(label: string): string {
  return `${label}-${Date.now().toString(36)}-${(sequence++).toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
}

/** The servers, for test names. */
export function processes(kind: StoreKind): string {
  return kind === 'memory' ? '1 process (memory lives in it)' : `2 processes (${FRAMEWORKS.join(' + ')})`;
}
