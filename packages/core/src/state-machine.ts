import type { Claim, IdempotencyRecord, StoredResponse } from './store.js';

/** Everything that can happen to one key. */
export type StateEvent =
  /** A request claims the key (`Store.acquire`). */
  | {
      type: 'claim';
      /** What the claim writes when it succeeds. */
      claim: Claim;
    }
  /** The holder stores its response (`Store.complete`). */
  | {
      type: 'complete';
      /** The writer's fencing token; only the current holder's is accepted. */
      token: string;
      /** The response to keep. */
      response: StoredResponse;
      /** How long the completed record lives from now, in ms. */
      ttlMs: number;
    }
  /** The holder gives the key up, so that a retry with the same fingerprint may run (`Store.release`). */
  | {
      type: 'release';
      /** The writer's fencing token; only the current holder's is accepted. */
      token: string;
      /** How long the failed record lives from now, in ms. */
      ttlMs: number;
    }
  /** The holder renews its lease (`Store.extend`). */
  | {
      type: 'extend';
      /** The writer's fencing token; only the current holder's is accepted. */
      token: string;
      /** The new lease length from now, in ms. */
      leaseMs: number;
    }
  /** The clock passes the lease's end. */
  | { type: 'lease_expiry' }
  /** The clock passes the record's expiry. */
  | { type: 'ttl_expiry' };

/**
 * What an event amounts to. For a claim: `execute` (the claim is the caller's), `replay` (completed
 * with the same fingerprint), `in_flight` (a live lease holds it), `mismatch` (another fingerprint).
 * For writes carrying a token: `accepted` or `rejected`. For clock events: `expired` or `unchanged`.
 */
export type Outcome =
  | 'execute'
  | 'replay'
  | 'in_flight'
  | 'mismatch'
  | 'accepted'
  | 'rejected'
  | 'expired'
  | 'unchanged';

/** The next record (`null`: absent) and the outcome. */
export interface Transition {
  /** The record after the event; `null` when there is none (absent or expired). */
  record: IdempotencyRecord | null;
  /** What the event amounted to (see {@link Outcome}). */
  outcome: Outcome;
}

/**
 * The idempotency state machine as one pure function: the record as it is at `now` (epoch ms), an
 * event, and the record after it with the event's outcome. Stores implement exactly these rules
 * atomically in their backend; the engine uses this function to read a blocking record.
 */
export function transition(current: IdempotencyRecord | null, event: StateEvent, now: number): Transition {
  const record = current !== null && current.expiresAt > now ? current : null;
  switch (event.type) {
    case 'claim': {
      const { claim } = event;
      const claimed: Transition = {
        outcome: 'execute',
        record: {
          state: 'in_flight',
          fingerprint: claim.fingerprint,
          token: claim.token,
          leaseExpiresAt: now + claim.leaseMs,
          expiresAt: now + claim.ttlMs,
          response: null,
        },
      };
      if (record === null) return claimed;
      if (record.fingerprint !== claim.fingerprint) return { record, outcome: 'mismatch' };
      if (record.state === 'completed') return { record, outcome: 'replay' };
      if (record.state === 'in_flight' && record.leaseExpiresAt > now)
        return { record, outcome: 'in_flight' };
      return claimed;
    }
    case 'complete':
      if (!heldBy(record, event.token)) return { record, outcome: 'rejected' };
      return {
        outcome: 'accepted',
        record: { ...record, state: 'completed', expiresAt: now + event.ttlMs, response: event.response },
      };
    case 'release':
      if (!heldBy(record, event.token)) return { record, outcome: 'rejected' };
      return { outcome: 'accepted', record: { ...record, state: 'failed', expiresAt: now + event.ttlMs } };
    case 'extend':
      if (!heldBy(record, event.token)) return { record, outcome: 'rejected' };
      return { outcome: 'accepted', record: { ...record, leaseExpiresAt: now + event.leaseMs } };
    case 'lease_expiry':
      if (record?.state !== 'in_flight' || record.leaseExpiresAt <= now)
        return { record, outcome: 'unchanged' };
      return { outcome: 'expired', record: { ...record, leaseExpiresAt: now } };
    case 'ttl_expiry':
      return { record: null, outcome: record === null ? 'unchanged' : 'expired' };
  }
}

function heldBy(record: IdempotencyRecord | null, token: string): record is IdempotencyRecord {
  return record !== null && record.state === 'in_flight' && record.token === token;
}
