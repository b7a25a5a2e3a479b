import { IdempotencyError, isIdempotencyError } from './errors.js';
import type { EventListener, IdempotencyEvent } from './events.js';
import { transition } from './state-machine.js';
import type { Claim, IdempotencyRecord, Store, StoredResponse } from './store.js';

/** Options shared by every way of running work idempotently (HTTP bindings, `idempotent`). */
export interface EngineOptions {
  /** Where records live. */
  store: Store;
  /** How long a completed (or failed) record is kept, in ms. Default 24 h. */
  ttlMs?: number;
  /** Lease of a running operation, in ms: after it ends without a heartbeat, a retry may take over. Default 15 s. */
  leaseMs?: number;
  /** Renew the lease every half-lease while the work runs. Default `true`. */
  heartbeat?: boolean;
  /** A store call that takes longer than this fails as `store_unavailable`, in ms. Default 3 s. */
  storeTimeoutMs?: number;
  /**
   * When another holder's lease is live, wait up to `timeoutMs` for its result (polling with backoff
   * from `pollMs`, default 50 ms, up to 1 s) and replay it, instead of failing with `in_flight` at once.
   * Default: off.
   */
  wait?: false | { timeoutMs: number; pollMs?: number };
  /**
   * When the store is unavailable before the work runs, run the work anyway without a claim (and emit
   * a `store_error` event with `failOpen: true`) instead of failing with `store_unavailable`.
   * Default `false` (fail closed): idempotency is never silently dropped.
   */
  failOpen?: boolean;
  /** How many times a failed `complete` is retried (with backoff, in the background). Default 4. */
  completeRetries?: number;
  /** Observer of engine events (execute, replay, in_flight, mismatch, store_error, lease_lost, complete_failed). */
  onEvent?: EventListener;
}

/** The operation the work runs under, handed to it by the engine. */
export interface Operation {
  /** The storage key (`prefix + hash(scope, key)`). */
  readonly storageKey: string;
  /** This execution's fencing token; a store write with it succeeds only while we hold the record. */
  readonly token: string;
  readonly fingerprint: string;
  /** The store the record lives in (for stores that can complete inside the work's own transaction). */
  readonly store: Store;
  /** The record ttl the engine would use when completing. */
  readonly ttlMs: number;
  /** Aborted when the lease is lost (another holder took over): the work should stop if it can. */
  readonly signal: AbortSignal;
  /** `false` when fail-open runs the work without a claim: there is no record to complete. */
  readonly claimed: boolean;
  /**
   * Tell the engine the work already completed the record itself (e.g. in the same database
   * transaction as its own writes), so the engine must not complete or release it.
   */
  markCompleted(): void;
}

/** How a run ended for the caller. */
export type RunResult<T> =
  | { replayed: false; value: T; operation: Operation }
  | { replayed: true; response: StoredResponse };

/** What a finished run keeps: a response to store, or `null` to release the key so that a retry runs again. */
export type Settle<T> = (
  value: T,
  operation: Operation,
) => StoredResponse | null | Promise<StoredResponse | null>;

const DEFAULTS = { ttlMs: 24 * 60 * 60 * 1000, leaseMs: 15_000, storeTimeoutMs: 3_000, completeRetries: 4 };

/**
 * Runs work at most once per storage key: claims the key in the store, runs the work under a
 * heartbeat-renewed lease, and completes or releases with the fencing token; or replays, reports the
 * conflict, or waits, as the store's record says.
 */
export class IdempotencyEngine {
  readonly store: Store;
  readonly ttlMs: number;
  readonly leaseMs: number;
  private readonly heartbeat: boolean;
  private readonly storeTimeoutMs: number;
  private readonly wait: { timeoutMs: number; pollMs: number } | null;
  private readonly failOpen: boolean;
  private readonly completeRetries: number;
  private readonly onEvent: EventListener | undefined;

  constructor(options: EngineOptions) {
    if (!options?.store) throw new TypeError('[idem] options.store is required');
    this.store = options.store;
    this.ttlMs = positive('ttlMs', options.ttlMs ?? DEFAULTS.ttlMs);
    this.leaseMs = positive('leaseMs', options.leaseMs ?? DEFAULTS.leaseMs);
    this.heartbeat = options.heartbeat ?? true;
    this.storeTimeoutMs = positive('storeTimeoutMs', options.storeTimeoutMs ?? DEFAULTS.storeTimeoutMs);
    this.wait = options.wait
      ? { timeoutMs: options.wait.timeoutMs, pollMs: options.wait.pollMs ?? 50 }
      : null;
    this.failOpen = options.failOpen ?? false;
    this.completeRetries = options.completeRetries ?? DEFAULTS.completeRetries;
    this.onEvent = options.onEvent;
  }

  /**
   * Run `work` for `storageKey` unless it already ran (replay), runs elsewhere (`in_flight`), or ran
   * with another fingerprint (`key_mismatch`). After the work, `settle` decides what is stored.
   *
   * @throws IdempotencyError `key_mismatch`, `in_flight` (with `retryAfterSeconds`),
   *   `store_unavailable` (before the work ran), `record_corrupt`; or whatever the work threw (the
   *   record is then released so that a retry runs again).
   */
  async run<T>(
    request: { storageKey: string; fingerprint: string },
    work: (operation: Operation) => Promise<T>,
    settle: Settle<T>,
  ): Promise<RunResult<T>> {
    const { storageKey: key, fingerprint } = request;
    const deadline = this.wait ? Date.now() + this.wait.timeoutMs : 0;
    let pollMs = this.wait?.pollMs ?? 0;
    for (;;) {
      const claim: Claim = {
        fingerprint,
        token: crypto.randomUUID(),
        leaseMs: this.leaseMs,
        ttlMs: this.ttlMs,
      };
      let acquired: Awaited<ReturnType<Store['acquire']>>;
      try {
        acquired = await this.call('acquire', key, () => this.store.acquire(key, claim));
      } catch (error) {
        if (isIdempotencyError(error, 'record_corrupt')) throw error;
        if (!this.failOpen) {
          this.emit({ type: 'store_error', key, operation: 'acquire', error });
          throw error;
        }
        this.emit({ type: 'store_error', key, operation: 'acquire', error, failOpen: true });
        const operation = new RunningOperation(key, claim.token, fingerprint, this.store, this.ttlMs, false);
        return { replayed: false, value: await work(operation), operation };
      }
      if (acquired.acquired) return this.execute(key, claim, work, settle);

      const { record } = acquired;
      const outcome = transition(record, { type: 'claim', claim }, Date.now()).outcome;
      if (outcome === 'mismatch') {
        this.emit({ type: 'mismatch', key });
        throw new IdempotencyError(
          'key_mismatch',
          'this Idempotency-Key was already used with a different request',
          {
            details: { key, store: this.store.name },
          },
        );
      }
      if (outcome === 'replay') {
        if (!record.response) {
          throw new IdempotencyError(
            'record_corrupt',
            `[${this.store.name}] completed record without a response`,
            {
              details: { key, store: this.store.name },
            },
          );
        }
        this.emit({ type: 'replay', key });
        return { replayed: true, response: record.response };
      }
      // in_flight, or (with clocks apart) a lease the store still counts as live.
      this.emit({ type: 'in_flight', key });
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw inFlight(key, this.store.name, record);
      await sleep(Math.min(pollMs, remaining));
      pollMs = Math.min(pollMs * 2, 1_000);
    }
  }

  private async execute<T>(
    key: string,
    claim: Claim,
    work: (op: Operation) => Promise<T>,
    settle: Settle<T>,
  ) {
    this.emit({ type: 'execute', key });
    const operation = new RunningOperation(key, claim.token, claim.fingerprint, this.store, this.ttlMs, true);
    const stopHeartbeat = this.startHeartbeat(operation);
    let value: T;
    let response: StoredResponse | null;
    try {
      value = await work(operation);
      response = await settle(value, operation);
    } catch (error) {
      stopHeartbeat();
      // Also when the work completed the record itself: its transaction may have rolled back since. The
      // release is fenced (in_flight + our token), so a completion that committed stays.
      await this.release(operation, operation.completedByWork);
      throw error;
    }
    stopHeartbeat();
    if (!operation.completedByWork) {
      if (response === null) await this.release(operation);
      else await this.complete(operation, response);
    }
    return { replayed: false as const, value, operation };
  }

  private startHeartbeat(operation: RunningOperation): () => void {
    if (!this.heartbeat) return () => {};
    const { storageKey: key, token } = operation;
    let busy = false;
    let stopped = false;
    // The record itself ends ttlMs after the claim; renewing a lease past that would only keep a hung
    // handler's key blocked forever.
    const lastRenewal = Date.now() + this.ttlMs - this.leaseMs;
    const timer = setInterval(async () => {
      if (busy) return;
      if (Date.now() > lastRenewal) {
        clearInterval(timer);
        return;
      }
      busy = true;
      try {
        const extended = await this.call('extend', key, () => this.store.extend(key, token, this.leaseMs));
        // An answer arriving after the work finished may have been decided after our own complete or
        // release (another pooled connection): it says nothing about a lost lease.
        if (stopped) return;
        if (!extended) {
          clearInterval(timer);
          this.emit({ type: 'lease_lost', key, operation: 'extend' });
          operation.loseLease();
        }
      } catch (error) {
        this.emit({ type: 'store_error', key, operation: 'extend', error });
      } finally {
        busy = false;
      }
    }, this.leaseMs / 2);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }

  private async release(operation: RunningOperation, completedByWork = false): Promise<void> {
    const { storageKey: key, token } = operation;
    try {
      const released = await this.call('release', key, () => this.store.release(key, token, this.ttlMs));
      if (!released && !completedByWork) this.emit({ type: 'lease_lost', key, operation: 'release' });
    } catch (error) {
      // The lease will run out and a retry with the same payload takes over: nothing is lost.
      this.emit({ type: 'store_error', key, operation: 'release', error });
    }
  }

  /** First attempt awaited (so that an immediate retry replays); later ones in the background. */
  private async complete(operation: RunningOperation, response: StoredResponse): Promise<void> {
    const { storageKey: key, token } = operation;
    const attempt = async (): Promise<boolean> => {
      try {
        const completed = await this.call('complete', key, () =>
          this.store.complete(key, token, response, this.ttlMs),
        );
        if (!completed) this.emit({ type: 'lease_lost', key, operation: 'complete' });
        return true;
      } catch (error) {
        this.emit({ type: 'store_error', key, operation: 'complete', error });
        return false;
      }
    };
    if (await attempt()) return;
    void (async () => {
      for (let retry = 0; retry < this.completeRetries; retry++) {
        await sleep(100 * 2 ** retry);
        if (await attempt()) return;
      }
      this.emit({
        type: 'complete_failed',
        key,
        error: new IdempotencyError('store_unavailable', `could not store the result in ${this.store.name}`),
      });
    })();
  }

  /** A store call bounded by the store timeout; backend failures become `store_unavailable`. */
  private call<R>(operation: string, key: string, fn: () => Promise<R>): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            storeUnavailable(this.store.name, key, `${operation} timed out after ${this.storeTimeoutMs} ms`),
          ),
        this.storeTimeoutMs,
      );
      const settle = (value: R) => {
        clearTimeout(timer);
        resolve(value);
      };
      const fail = (error: unknown) => {
        clearTimeout(timer);
        reject(
          isIdempotencyError(error)
            ? error
            : storeUnavailable(this.store.name, key, `${operation} failed`, error),
        );
      };
      try {
        fn().then(settle, fail);
      } catch (error) {
        fail(error);
      }
    });
  }

  private emit(event: Omit<IdempotencyEvent, 'store'>): void {
    if (!this.onEvent) return;
    try {
      this.onEvent({ ...event, store: this.store.name });
    } catch {
      // an observer must not break the request
    }
  }
}

class RunningOperation implements Operation {
  completedByWork = false;
  // Created on first use: most work never looks at the signal, and an AbortController is not free.
  private controller: AbortController | undefined;
  constructor(
    readonly storageKey: string,
    readonly token: string,
    readonly fingerprint: string,
    readonly store: Store,
    readonly ttlMs: number,
    readonly claimed: boolean,
  ) {}
  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }
  markCompleted(): void {
    this.completedByWork = true;
  }
  loseLease(): void {
    this.controller ??= new AbortController();
    this.controller.abort(new IdempotencyError('in_flight', 'the lease was lost to another holder'));
  }
}

function storeUnavailable(store: string, key: string, what: string, cause?: unknown): IdempotencyError {
  return new IdempotencyError('store_unavailable', `[${store}] ${what}`, {
    cause,
    details: { store, key, retryAfterSeconds: 1 },
  });
}

function inFlight(key: string, store: string, record: IdempotencyRecord): IdempotencyError {
  const seconds = Math.min(Math.max(Math.ceil((record.leaseExpiresAt - Date.now()) / 1000), 1), 60);
  return new IdempotencyError('in_flight', 'a request with this Idempotency-Key is still being processed', {
    details: { key, store, retryAfterSeconds: seconds },
  });
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value))
    throw new TypeError(`[idem] ${name} must be a positive number`);
  return value;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
