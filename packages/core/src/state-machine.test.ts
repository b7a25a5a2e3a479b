import { describe, expect, it } from 'vitest';
import { type Outcome, type StateEvent, transition } from './state-machine.js';
import type { Claim, IdempotencyRecord, StoredResponse } from './store.js';

const NOW = 1_700_000_000_000;
const TOKEN = 'token-holder';
const STALE = 'token-stale';
const FP = 'fp-a';
const RESPONSE: StoredResponse = {
  status: 201,
  headers: [['content-type', 'text/plain']],
  body: new Uint8Array([1]),
};
const NEW_RESPONSE: StoredResponse = { status: 200, headers: [], body: new Uint8Array([2]) };

function record(overrides: Partial<IdempotencyRecord>): IdempotencyRecord {
  return {
    state: 'in_flight',
    fingerprint: FP,
    token: TOKEN,
    leaseExpiresAt: NOW + 5_000,
    expiresAt: NOW + 60_000,
    response: null,
    ...overrides,
  };
}

// Boundaries are exact: a lease or record ending at `now` has ended.
const states = {
  absent: null,
  'in_flight, live lease': record({ leaseExpiresAt: NOW + 1 }),
  'in_flight, lease ended': record({ leaseExpiresAt: NOW }),
  completed: record({ state: 'completed', leaseExpiresAt: NOW - 10_000, response: RESPONSE }),
  failed: record({ state: 'failed', leaseExpiresAt: NOW - 10_000 }),
  'in_flight, live lease, expired': record({ leaseExpiresAt: NOW + 1, expiresAt: NOW }),
  'in_flight, lease ended, expired': record({ leaseExpiresAt: NOW - 1, expiresAt: NOW }),
  'completed, expired': record({ state: 'completed', expiresAt: NOW, response: RESPONSE }),
  'failed, expired': record({ state: 'failed', expiresAt: NOW - 1 }),
} satisfies Record<string, IdempotencyRecord | null>;
type StateName = keyof typeof states;

const CLAIM_SAME: Claim = { fingerprint: FP, token: 'token-new', leaseMs: 1_000, ttlMs: 30_000 };
const CLAIM_OTHER: Claim = { ...CLAIM_SAME, fingerprint: 'fp-b' };

const events = {
  'claim, same fingerprint': { type: 'claim', claim: CLAIM_SAME },
  'claim, other fingerprint': { type: 'claim', claim: CLAIM_OTHER },
  'complete, holder token': { type: 'complete', token: TOKEN, response: NEW_RESPONSE, ttlMs: 90_000 },
  'complete, stale token': { type: 'complete', token: STALE, response: NEW_RESPONSE, ttlMs: 90_000 },
  'release, holder token': { type: 'release', token: TOKEN, ttlMs: 90_000 },
  'release, stale token': { type: 'release', token: STALE, ttlMs: 90_000 },
  'extend, holder token': { type: 'extend', token: TOKEN, leaseMs: 7_000 },
  'extend, stale token': { type: 'extend', token: STALE, leaseMs: 7_000 },
  lease_expiry: { type: 'lease_expiry' },
  ttl_expiry: { type: 'ttl_expiry' },
} satisfies Record<string, StateEvent>;
type EventName = keyof typeof events;

/** What the next record is, relative to the current one. */
type Next =
  | 'same' // the current record, untouched
  | 'absent'
  | 'claimed' // a new in-flight record of the claim
  | 'completed' // the current record, completed with the new response and ttl
  | 'failed' // the current record, failed with the new ttl
  | 'extended' // the current record with the new lease
  | 'lease_ended'; // the current record with its lease ending now
type Cell = readonly [Outcome, Next];

const REJECTED: Cell = ['rejected', 'same'];
const ABSENT_ROW: Record<EventName, Cell> = {
  'claim, same fingerprint': ['execute', 'claimed'],
  'claim, other fingerprint': ['execute', 'claimed'],
  'complete, holder token': ['rejected', 'absent'],
  'complete, stale token': ['rejected', 'absent'],
  'release, holder token': ['rejected', 'absent'],
  'release, stale token': ['rejected', 'absent'],
  'extend, holder token': ['rejected', 'absent'],
  'extend, stale token': ['rejected', 'absent'],
  lease_expiry: ['unchanged', 'absent'],
  ttl_expiry: ['unchanged', 'absent'],
};

/** The rules of DESIGN.md and store.ts, state by state. */
const table: Record<StateName, Record<EventName, Cell>> = {
  absent: ABSENT_ROW,
  'in_flight, live lease': {
    'claim, same fingerprint': ['in_flight', 'same'],
    'claim, other fingerprint': ['mismatch', 'same'],
    'complete, holder token': ['accepted', 'completed'],
    'complete, stale token': REJECTED,
    'release, holder token': ['accepted', 'failed'],
    'release, stale token': REJECTED,
    'extend, holder token': ['accepted', 'extended'],
    'extend, stale token': REJECTED,
    lease_expiry: ['expired', 'lease_ended'],
    ttl_expiry: ['expired', 'absent'],
  },
  'in_flight, lease ended': {
    'claim, same fingerprint': ['execute', 'claimed'],
    'claim, other fingerprint': ['mismatch', 'same'],
    // The holder may still finish as long as nobody took over.
    'complete, holder token': ['accepted', 'completed'],
    'complete, stale token': REJECTED,
    'release, holder token': ['accepted', 'failed'],
    'release, stale token': REJECTED,
    'extend, holder token': ['accepted', 'extended'],
    'extend, stale token': REJECTED,
    lease_expiry: ['unchanged', 'same'],
    ttl_expiry: ['expired', 'absent'],
  },
  completed: {
    'claim, same fingerprint': ['replay', 'same'],
    'claim, other fingerprint': ['mismatch', 'same'],
    'complete, holder token': REJECTED,
    'complete, stale token': REJECTED,
    'release, holder token': REJECTED,
    'release, stale token': REJECTED,
    'extend, holder token': REJECTED,
    'extend, stale token': REJECTED,
    lease_expiry: ['unchanged', 'same'],
    ttl_expiry: ['expired', 'absent'],
  },
  failed: {
    'claim, same fingerprint': ['execute', 'claimed'],
    'claim, other fingerprint': ['mismatch', 'same'],
    'complete, holder token': REJECTED,
    'complete, stale token': REJECTED,
    'release, holder token': REJECTED,
    'release, stale token': REJECTED,
    'extend, holder token': REJECTED,
    'extend, stale token': REJECTED,
    lease_expiry: ['unchanged', 'same'],
    ttl_expiry: ['expired', 'absent'],
  },
  // A record past its expiry is absent for every event, whatever it was.
  'in_flight, live lease, expired': ABSENT_ROW,
  'in_flight, lease ended, expired': ABSENT_ROW,
  'completed, expired': ABSENT_ROW,
  'failed, expired': ABSENT_ROW,
};

function expectedRecord(
  current: IdempotencyRecord | null,
  event: StateEvent,
  next: Next,
): IdempotencyRecord | null {
  switch (next) {
    case 'same':
      return current;
    case 'absent':
      return null;
    case 'claimed': {
      if (event.type !== 'claim') throw new Error('claimed needs a claim');
      const { claim } = event;
      return {
        state: 'in_flight',
        fingerprint: claim.fingerprint,
        token: claim.token,
        leaseExpiresAt: NOW + claim.leaseMs,
        expiresAt: NOW + claim.ttlMs,
        response: null,
      };
    }
    case 'completed':
      if (event.type !== 'complete' || current === null) throw new Error('completed needs a complete');
      return { ...current, state: 'completed', expiresAt: NOW + event.ttlMs, response: event.response };
    case 'failed':
      if (event.type !== 'release' || current === null) throw new Error('failed needs a release');
      return { ...current, state: 'failed', expiresAt: NOW + event.ttlMs };
    case 'extended':
      if (event.type !== 'extend' || current === null) throw new Error('extended needs an extend');
      return { ...current, leaseExpiresAt: NOW + event.leaseMs };
    case 'lease_ended':
      if (current === null) throw new Error('lease_ended needs a record');
      return { ...current, leaseExpiresAt: NOW };
  }
}

const rows = (Object.keys(states) as StateName[]).flatMap((state) =>
  (Object.keys(events) as EventName[]).map((event) => {
    const [outcome, next] = table[state][event];
    return { state, event, outcome, next };
  }),
);

/** Deep-freezes a value, so that a transition that mutated its input would throw. */
function frozen<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value)) {
    for (const inner of Object.values(value)) frozen(inner);
    Object.freeze(value);
  }
  return value;
}

describe('transition', () => {
  it('covers every state with every event', () => {
    expect(rows).toHaveLength(Object.keys(states).length * Object.keys(events).length);
    expect(rows).toHaveLength(90);
  });

  it.each(rows)('$state + $event -> $outcome, $next', ({ state, event, outcome, next }) => {
    const current = frozen(structuredClone(states[state]));
    const ev = frozen(structuredClone(events[event]) as StateEvent);
    const result = transition(current, ev, NOW);
    expect(result.outcome).toBe(outcome);
    expect(result.record).toEqual(expectedRecord(current, ev, next));
    // The input is never modified (the frozen copies would have thrown) and stays as it was.
    expect(current).toEqual(states[state]);
  });

  it('returns the stored response itself on replay, not a copy', () => {
    const completed = states.completed;
    const result = transition(completed, events['claim, same fingerprint'], NOW);
    expect(result.record).toBe(completed);
  });

  it('lets a re-claim of a failed record start a fresh lease and ttl with the new token', () => {
    const result = transition(
      states.failed,
      { type: 'claim', claim: { ...CLAIM_SAME, token: 'retry' } },
      NOW + 10,
    );
    expect(result).toEqual({
      outcome: 'execute',
      record: {
        state: 'in_flight',
        fingerprint: FP,
        token: 'retry',
        leaseExpiresAt: NOW + 10 + CLAIM_SAME.leaseMs,
        expiresAt: NOW + 10 + CLAIM_SAME.ttlMs,
        response: null,
      },
    });
  });

  it('fences a holder whose lease was taken over: its writes are rejected, the new holder’s accepted', () => {
    const old = states['in_flight, lease ended'];
    const takeover = transition(old, events['claim, same fingerprint'], NOW);
    expect(takeover.outcome).toBe('execute');
    for (const write of [
      events['complete, holder token'],
      events['release, holder token'],
      events['extend, holder token'],
    ]) {
      expect(transition(takeover.record, write, NOW)).toEqual({
        outcome: 'rejected',
        record: takeover.record,
      });
    }
    const done = transition(
      takeover.record,
      { ...events['complete, holder token'], token: CLAIM_SAME.token },
      NOW,
    );
    expect(done.outcome).toBe('accepted');
    expect(done.record).toMatchObject({
      state: 'completed',
      token: CLAIM_SAME.token,
      response: NEW_RESPONSE,
    });
  });
});
