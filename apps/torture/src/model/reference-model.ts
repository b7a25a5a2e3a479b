import {
  type IdempotencyRecord,
  type RecordState,
  type StateEvent,
  type StoredResponse,
  transition,
} from '@idem/core';

/**
 * The reference model of one key, for stores that keep time on their own clock.
 *
 * The decisions are core's pure `transition`; this file only adds what a real clock forces on a model:
 * a store stamps an operation with its own "now", somewhere between the moment the call was sent and
 * the moment its answer came back. So the model keeps every time as a span of possible values, and an
 * operation whose window overlaps a boundary (a lease end, a record end) has two possible outcomes,
 * both legal. The runner avoids such windows by sleeping past boundaries, so they stay rare; when one
 * happens anyway (a slow call), the model keeps every candidate state that agrees with what the store
 * answered, and the next answers narrow them down again. Nothing else is tolerated.
 */

/** A time on the store's clock known to lie within `[lo, hi]` (epoch ms). */
export interface Span {
  lo: number;
  hi: number;
}

/** One possible state of a key's record, times as spans. */
export interface ModelRecord {
  state: RecordState;
  fingerprint: string;
  token: string;
  response: StoredResponse | null;
  lease: Span;
  expires: Span;
}

/** What one store call answered, in the shape the model predicts. */
export type Observation =
  | { kind: 'acquire'; acquired: true }
  | { kind: 'acquire'; acquired: false; record: IdempotencyRecord }
  | { kind: 'write'; ok: boolean }
  | { kind: 'get'; record: IdempotencyRecord | null }
  | { kind: 'delete' };

/** A store operation as the model sees it (a `StateEvent` plus reads). */
export type ModelOperation =
  | Extract<StateEvent, { type: 'claim' | 'complete' | 'release' | 'extend' }>
  | { type: 'get' }
  | { type: 'delete' };

/** Model parameters of one store. */
export interface ModelClock {
  /**
   * Slack added on each side of an operation's window, for clock resolution (Redis `TIME` and
   * PostgreSQL timestamps are floored to whole milliseconds on the way out).
   */
  resolutionMs: number;
  /**
   * How late the store judges a lease over for a takeover (DynamoDB's `clockSkewMs`); 0 for the rest.
   * Only claims look at leases.
   */
  leaseMarginMs: number;
}

/** The outcome the model predicts for one candidate state in one possible world. */
interface Prediction {
  /** Checks an answer against the prediction; returns why it differs, or null when it matches. */
  mismatch(actual: Observation): string | null;
  /** The candidate's next state, given the answer (exact times learnt from a returned record). */
  next(actual: Observation): ModelRecord | null;
  describe(): string;
  /** The kind of situation and outcome, for coverage counts (e.g. `in_flight/lease over: claim -> execute`). */
  label: string;
}

/**
 * Every possible world for `candidate` when the store's "now" lies within `window`: each boundary that
 * the window straddles may have been passed or not. Returns the predictions of `transition` in each.
 */
export function predict(
  candidate: ModelRecord | null,
  operation: ModelOperation,
  window: Span,
  clock: ModelClock,
): Prediction[] {
  const worlds: Array<{ live: boolean; leaseLive: boolean }> = [];
  if (candidate === null) worlds.push({ live: false, leaseLive: false });
  else {
    const lives = possible(candidate.expires, window);
    const lease = shift(candidate.lease, clock.leaseMarginMs);
    // Only a claim on an in-flight record looks at the lease.
    const leases =
      operation.type === 'claim' && candidate.state === 'in_flight' ? possible(lease, window) : [true];
    for (const live of lives) for (const leaseLive of leases) worlds.push({ live, leaseLive });
  }
  return worlds.map(({ live, leaseLive }) => predictIn(candidate, live, leaseLive, operation, window));
}

/** Which of "still live" / "passed" a boundary can be at some instant of `window`. */
function possible(boundary: Span, window: Span): boolean[] {
  const out: boolean[] = [];
  // live at s iff boundary > s (the rule of `transition`: expiresAt > now).
  if (boundary.hi > window.lo) out.push(true);
  if (boundary.lo <= window.hi) out.push(false);
  return out;
}

const shift = (span: Span, by: number): Span => ({ lo: span.lo + by, hi: span.hi + by });

function predictIn(
  candidate: ModelRecord | null,
  live: boolean,
  leaseLive: boolean,
  operation: ModelOperation,
  window: Span,
): Prediction {
  // A concrete record at a concrete instant that `transition` judges exactly as this world says.
  const NOW = 1_000_000;
  const concrete: IdempotencyRecord | null =
    candidate === null
      ? null
      : {
          state: candidate.state,
          fingerprint: candidate.fingerprint,
          token: candidate.token,
          response: candidate.response,
          leaseExpiresAt: leaseLive ? NOW + 1 : NOW,
          expiresAt: live ? NOW + 1 : NOW,
        };
  const current = live ? candidate : null;
  const world = `${candidate === null ? 'absent' : live ? 'live' : 'expired'}${
    operation.type === 'claim' && current?.state === 'in_flight'
      ? leaseLive
        ? '/lease live'
        : '/lease over'
      : ''
  }`;

  const situation =
    current === null
      ? candidate === null
        ? 'absent'
        : 'expired'
      : current.state === 'in_flight' && operation.type === 'claim'
        ? `in_flight/${leaseLive ? 'lease live' : 'lease over'}`
        : current.state;

  switch (operation.type) {
    case 'get':
      return {
        mismatch: (actual) =>
          actual.kind !== 'get'
            ? `expected a record or null, got ${show(actual)}`
            : compareRecord(current, actual.record),
        next: (actual) => learn(current, actual.kind === 'get' ? actual.record : null),
        describe: () => `${world}: get -> ${current === null ? 'null' : showModel(current)}`,
        label: `${situation}: get`,
      };
    case 'delete':
      return {
        mismatch: (actual) => (actual.kind === 'delete' ? null : `unexpected ${show(actual)}`),
        next: () => null,
        describe: () => `${world}: delete`,
        label: `${situation}: delete`,
      };
    case 'claim': {
      const { claim } = operation;
      const result = transition(concrete, operation, NOW);
      if (result.outcome === 'execute') {
        const next: ModelRecord = {
          state: 'in_flight',
          fingerprint: claim.fingerprint,
          token: claim.token,
          response: null,
          lease: shift(window, claim.leaseMs),
          expires: shift(window, claim.ttlMs),
        };
        return {
          mismatch: (actual) =>
            actual.kind === 'acquire' && actual.acquired ? null : `expected acquired, got ${show(actual)}`,
          next: () => next,
          describe: () => `${world}: claim -> acquired`,
          label: `${situation}: claim -> execute`,
        };
      }
      return {
        mismatch: (actual) => {
          if (actual.kind !== 'acquire' || actual.acquired)
            return `expected refused (${result.outcome}), got ${show(actual)}`;
          return compareRecord(current, actual.record);
        },
        next: (actual) =>
          learn(current, actual.kind === 'acquire' && !actual.acquired ? actual.record : null),
        describe: () =>
          `${world}: claim -> refused (${result.outcome}) by ${current === null ? '?' : showModel(current)}`,
        label: `${situation}: claim -> ${result.outcome}`,
      };
    }
    case 'complete':
    case 'release':
    case 'extend': {
      const result = transition(concrete, operation, NOW);
      const accepted = result.outcome === 'accepted';
      let next: ModelRecord | null = current;
      if (accepted && current !== null) {
        next = { ...current, state: result.record!.state, response: result.record!.response };
        if (operation.type === 'extend') next.lease = shift(window, operation.leaseMs);
        else next.expires = shift(window, operation.ttlMs);
      }
      return {
        mismatch: (actual) =>
          actual.kind === 'write' && actual.ok === accepted
            ? null
            : `expected ${operation.type} -> ${accepted}, got ${show(actual)}`,
        next: () => next,
        describe: () => `${world}: ${operation.type} -> ${accepted}`,
        label: `${situation}: ${operation.type} -> ${result.outcome}`,
      };
    }
  }
}

/** After a store returned a record, its times are known exactly (to the store's resolution). */
function learn(current: ModelRecord | null, record: IdempotencyRecord | null): ModelRecord | null {
  if (current === null || record === null) return current;
  return {
    ...current,
    lease: { lo: record.leaseExpiresAt, hi: record.leaseExpiresAt + 1 },
    expires: { lo: record.expiresAt, hi: record.expiresAt + 1 },
  };
}

function compareRecord(expected: ModelRecord | null, actual: IdempotencyRecord | null): string | null {
  if (expected === null || actual === null) {
    return expected === actual
      ? null
      : `expected ${expected ? showModel(expected) : 'null'}, got ${showRecord(actual)}`;
  }
  const differences: string[] = [];
  for (const field of ['state', 'fingerprint', 'token'] as const) {
    if (expected[field] !== actual[field])
      differences.push(`${field} ${JSON.stringify(actual[field])} != ${JSON.stringify(expected[field])}`);
  }
  // +-1: a returned time is floored to the millisecond by some stores.
  if (actual.leaseExpiresAt < expected.lease.lo - 1 || actual.leaseExpiresAt > expected.lease.hi + 1)
    differences.push(`leaseExpiresAt ${actual.leaseExpiresAt} outside ${showSpan(expected.lease)}`);
  if (actual.expiresAt < expected.expires.lo - 1 || actual.expiresAt > expected.expires.hi + 1)
    differences.push(`expiresAt ${actual.expiresAt} outside ${showSpan(expected.expires)}`);
  const response = compareResponse(expected.response, actual.response);
  if (response !== null) differences.push(response);
  return differences.length === 0 ? null : `record differs: ${differences.join('; ')}`;
}

function compareResponse(expected: StoredResponse | null, actual: StoredResponse | null): string | null {
  if (expected === null || actual === null)
    return expected === actual ? null : `response ${showResponse(actual)} != ${showResponse(expected)}`;
  if (
    expected.status !== actual.status ||
    (expected.omitted ?? null) !== (actual.omitted ?? null) ||
    JSON.stringify(expected.headers) !== JSON.stringify(actual.headers) ||
    !sameBytes(expected.body, actual.body)
  ) {
    return `response ${showResponse(actual)} != ${showResponse(expected)}`;
  }
  return null;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const showSpan = (span: Span) => `[${span.lo}, ${span.hi}]`;

function showResponse(response: StoredResponse | null): string {
  if (response === null) return 'null';
  const body =
    response.body.length <= 24
      ? `0x${Buffer.from(response.body).toString('hex')}`
      : `${response.body.length} bytes`;
  return `{status ${response.status}, headers ${JSON.stringify(response.headers)}, body ${body}${
    response.omitted ? `, omitted ${response.omitted}` : ''
  }}`;
}

/** A model record, for failure messages. */
export function showModel(record: ModelRecord | null): string {
  if (record === null) return 'absent';
  return `{${record.state} fp=${record.fingerprint} token=${record.token} lease=${showSpan(record.lease)} expires=${showSpan(record.expires)} response=${showResponse(record.response)}}`;
}

function showRecord(record: IdempotencyRecord | null): string {
  if (record === null) return 'null';
  return `{${record.state} fp=${record.fingerprint} token=${record.token} lease=${record.leaseExpiresAt} expires=${record.expiresAt} response=${showResponse(record.response)}}`;
}

/** An observation, for failure messages. */
export function show(observation: Observation): string {
  switch (observation.kind) {
    case 'acquire':
      return observation.acquired ? 'acquired' : `refused by ${showRecord(observation.record)}`;
    case 'write':
      return String(observation.ok);
    case 'get':
      return showRecord(observation.record);
    case 'delete':
      return 'deleted';
  }
}

/** The boundaries of a candidate that an operation at some instant could fall on (lease ends matter to claims). */
export function boundaries(candidate: ModelRecord | null, clock: ModelClock): Span[] {
  if (candidate === null) return [];
  const spans = [candidate.expires];
  if (candidate.state === 'in_flight') spans.push(shift(candidate.lease, clock.leaseMarginMs));
  return spans;
}

/** A stable identity of a candidate state, to drop duplicates. */
export function identity(record: ModelRecord | null): string {
  return showModel(record);
}
