/**
 * The Store contract: the few atomic, single-key operations every idem store offers.
 *
 * Every condition below is evaluated atomically inside the backend (a Lua script, one SQL statement,
 * one conditional write), and times come from the backend's own clock wherever it has one, so that
 * application servers with skewed clocks agree on leases and expiry.
 *
 * Keys reaching a store are always storage keys built by the engine (`prefix + hash(scope, key)`),
 * never raw client input.
 */

/** The three states a stored record can be in. "absent" is represented by `null`. */
export type RecordState = 'in_flight' | 'completed' | 'failed';

/** Why a completed record holds no body although the original response had one. */
export type OmittedBody = 'too_large' | 'streaming';

/** A response (or a serialised job result) exactly as it is kept and replayed. */
export interface StoredResponse {
  /** HTTP status; jobs store 200. */
  status: number;
  /** Header pairs in their original order, repeated names kept as separate pairs; names lower-case. */
  headers: ReadonlyArray<readonly [name: string, value: string]>;
  /** The body bytes, byte-exact. Empty when `omitted` is set. */
  body: Uint8Array;
  /**
   * Set when the body was not kept (it was larger than allowed, or streamed). The original went to
   * its client untouched; a retry is told that it was not stored, and the work never runs twice.
   */
  omitted?: OmittedBody;
}

/** One record, as a store returns it. Times are epoch milliseconds on the store's clock. */
export interface IdempotencyRecord {
  /**
   * `in_flight` while a holder runs the work, `completed` once its response is kept, `failed` once it
   * was released (a retry with the same fingerprint may run again).
   */
  state: RecordState;
  /** Hash of what the request asked for; a claim with another fingerprint never takes the record over. */
  fingerprint: string;
  /** Fencing token of the current (or last) holder. Writes after the claim must carry it. */
  token: string;
  /** When the holder's lease ends. Only meaningful while `in_flight`. */
  leaseExpiresAt: number;
  /** When the record stops existing. A record past it is treated as absent by every operation. */
  expiresAt: number;
  /** The stored response; present exactly when `state` is `completed`. */
  response: StoredResponse | null;
}

/** What `acquire` writes when it succeeds. */
export interface Claim {
  /** The claiming request's fingerprint, written to the record; later claims are compared with it. */
  fingerprint: string;
  /** The new holder's fencing token, unique per claim. */
  token: string;
  /** Lease length: after it ends, a claim with the same fingerprint may take over. */
  leaseMs: number;
  /** How long the in-flight record lives at most. */
  ttlMs: number;
}

/** The answer of `acquire`: either the claim is ours, or the record that blocks it. */
export type AcquireResult =
  | {
      /** The claim succeeded: the caller holds the record and runs the work. */
      acquired: true;
    }
  | {
      /** Nothing was written. */
      acquired: false;
      /** The blocking record: completed, in flight under a live lease, or with another fingerprint. */
      record: IdempotencyRecord;
    };

/**
 * A place where idem remembers operations. Implementations: `@idem/memory`, `@idem/redis`,
 * `@idem/postgres`, `@idem/dynamodb`; `@idem/store-test-suite` is the definition of a correct one.
 *
 * Errors: a backend failure is thrown as is (the engine turns it into `store_unavailable`); a record
 * the store cannot decode is thrown as `IdempotencyError` with code `record_corrupt`.
 */
export interface Store {
  /** Short name used in error messages and events, e.g. `"redis"`. */
  readonly name: string;

  /**
   * Atomically claim `key`. Succeeds (writing an `in_flight` record with `claim.token`, a lease of
   * `claim.leaseMs` and an expiry of `claim.ttlMs`) iff there is no record, or the record has expired,
   * or the record has the same fingerprint and is `failed`, or is `in_flight` with an expired lease.
   * Otherwise nothing is written and the blocking record is returned, in the same round trip where
   * the backend allows it. A `completed` record is never taken over before it expires.
   */
  acquire(key: string, claim: Claim): Promise<AcquireResult>;

  /**
   * Store `response` and move the record to `completed`, living `ttlMs` from now. Succeeds only if
   * the record is `in_flight` and holds `token` (even past its lease, as long as nobody took over).
   * @returns whether it succeeded.
   */
  complete(key: string, token: string, response: StoredResponse, ttlMs: number): Promise<boolean>;

  /**
   * Move the record to `failed` (keeping its fingerprint, living `ttlMs` from now) so that a retry with
   * the same payload may run again. Succeeds only if the record is `in_flight` and holds `token`.
   * @returns whether it succeeded.
   */
  release(key: string, token: string, ttlMs: number): Promise<boolean>;

  /**
   * Renew the lease to `leaseMs` from now. Succeeds only if the record is `in_flight` and holds `token`.
   * @returns whether it succeeded.
   */
  extend(key: string, token: string, leaseMs: number): Promise<boolean>;

  /** Read a record; `null` when absent or expired. */
  get(key: string): Promise<IdempotencyRecord | null>;

  /** Remove a record whatever its state. Removing an absent key is not an error. */
  delete(key: string): Promise<void>;
}
