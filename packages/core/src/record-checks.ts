import { IdempotencyError } from './errors.js';
import type { OmittedBody, RecordState } from './store.js';

// Checks stores apply when they decode a record, so that a record written by something else, truncated
// or of an older format is reported as `record_corrupt`, never replayed as garbage.

const STATES: ReadonlySet<unknown> = new Set<RecordState>(['in_flight', 'completed', 'failed']);
const OMITTED: ReadonlySet<unknown> = new Set<OmittedBody>(['too_large', 'streaming']);

/** Whether `value` is a record state. */
export function isRecordState(value: unknown): value is RecordState {
  return STATES.has(value);
}

/** Whether `value` is an omitted-body marker of a stored response. */
export function isOmittedBody(value: unknown): value is OmittedBody {
  return OMITTED.has(value);
}

/** Whether `value` is a list of `[name, value]` string pairs (stored headers). */
export function isHeaderPairs(value: unknown): value is Array<[string, string]> {
  return (
    Array.isArray(value) &&
    value.every(
      (pair) =>
        Array.isArray(pair) &&
        pair.length === 2 &&
        typeof pair[0] === 'string' &&
        typeof pair[1] === 'string',
    )
  );
}

/** The error a store throws for a record it cannot read, naming the store and the key. */
export function recordCorrupt(store: string, key: string, why: string, cause?: unknown): IdempotencyError {
  return new IdempotencyError('record_corrupt', `[${store}] record ${key} cannot be read: ${why}`, {
    cause,
    details: { store, key },
  });
}
