import { IdempotencyError, isIdempotencyError } from './errors.js';
import type { EventListener, IdempotencyEvent } from './events.js';
import { transition } from './state-machine.js';
import type { AcquireResult, Claim, IdempotencyRecord, Store, StoredResponse } from './store.js';

/** Options shared by every way of running work idempotently (HTTP bindings, `idempotent`). */
export interface EngineOptions {
  /** Where records live. */
  store: Store;
  /** How long a completed (or failed) record is kept, in ms. Default 24 h. */
  ttlMs?: number | undefined;
  /** Lease of a running operation, in ms: after it ends without a heartbeat, a retry may take over. Default 15 s. */
  leaseMs?: number | undefined;
  /** Renew the lease every third of a lease while the work runs. Default `true`. */
  heartbeat?: boolean | undefined;
  /** A store call that takes longer than this fails as `store_unavailable`, in ms. Default 3 s. */
  storeTimeoutMs?: number | undefined;
  /**
   * How many store calls that timed out may still be waiting for the store's answer. Beyond it, a new
   * claim fails at once as `store_unavailable` without reaching the store, until the store answers some
   * of them. A store that never answers (a Redis or PostgreSQL that accepts connections and hangs) would
   * otherwise keep every call in its client's queue, and memory would grow for as long as the hang
   * lasts. The calls of claims already made (completing, renewing, releasing) are still sent: work that
   * ran must be able to record its result once the store answers. Counted per engine (each middleware or
   * plugin instance has its own). A positive integer, or `Infinity` for no bound; default 1000.
   */
  maxTimedOutCalls?: number | undefined;
  /**
   * When another holder's lease is live, wait up to `timeoutMs` for its result (polling with backoff
   * from `pollMs`, default 50 ms, up to 1 s) and replay it, instead of failing with `in_flight` at once.
   * Default: off.
   */
  wait?: false | { timeoutMs: number; pollMs?: number | undefined } | undefined;
  /**
   * When the store is unavailable before the work runs, run the work anyway without a claim (and emit
   * a `store_error` event with `failOpen: true`) instead of failing with `store_unavailable`.
   * Default `false` (fail closed): idempotency is never silently dropped.
   */
  failOpen?: boolean | undefined;
  /** How many times a failed `complete` is retried (with backoff, in the background). Default 4. */
  completeRetries?: number | undefined;
  /**
   * Observer of engine events (execute, replay, in_flight, mismatch, store_error, lease_lost,
   * complete_failed, record_corrupt).
   */
  onEvent?: EventListener | undefined;
}

/** The operation the work runs under, handed to it by the engine. */
export interface Operation {
  /** The storage key (`prefix + hash(scope, key)`). */
  readonly storageKey: string;
  /** This execution's fencing token; a store write with it succeeds only while we hold the record. */
  readonly token: string;
  /** The request's fingerprint, as the claim stored it. */
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

const DEFAULTS = {
  ttlMs: 24 * 60 * 60 * 1000,
  leaseMs: 15_000,
  storeTimeoutMs: 3_000,
  maxTimedOutCalls: 1_000,
  completeRetries: 4,
};

/**
 * Runs work at most once per storage key: claims the key in the store, runs the work under a
 * heartbeat-renewed lease, and completes or releases with the fencing token; or replays, reports the
 * conflict, or waits, as the store's record says.
 */
export class IdempotencyEngine {
  /** Where the records live. */
  readonly store: Store;
  /** How long a completed or failed record is kept, in ms. */
  readonly ttlMs: number;
  /** The lease of a running operation, in ms. */
  readonly leaseMs: number;
  private readonly heartbeat: boolean;
  private readonly storeTimeoutMs: number;
  private readonly wait: { timeoutMs: number; pollMs: number } | null;
  private readonly failOpen: boolean;
  private readonly completeRetries: number;
  private readonly onEvent: EventListener | undefined;
  /** Store calls in flight, timed out by one shared timer rather than a timer per call. */
  private readonly storeDeadlines: Deadlines;
  /** Store calls that timed out and whose answer has not come yet, and how many may. */
  private readonly timedOut: { count: number; readonly max: number };
  /** Running work's next heartbeats, likewise on one shared timer. */
  private readonly heartbeats: Deadlines;

  /**
   * @throws TypeError when `store` is missing, a duration is not a positive number or `maxTimedOutCalls`
   *   not a positive integer (or `Infinity`).
   */
  constructor(options: EngineOptions) {
    if (!options?.store) throw new TypeError('[idem] options.store is required');
    this.store = options.store;
    this.ttlMs = positive('ttlMs', options.ttlMs ?? DEFAULTS.ttlMs);
    this.leaseMs = positive('leaseMs', options.leaseMs ?? DEFAULTS.leaseMs);
    this.heartbeat = options.heartbeat ?? true;
    this.storeTimeoutMs = positive('storeTimeoutMs', options.storeTimeoutMs ?? DEFAULTS.storeTimeoutMs);
    this.wait = options.wait
      ? {
          timeoutMs: nonNegative('wait.timeoutMs', options.wait.timeoutMs),
          pollMs: positive('wait.pollMs', options.wait.pollMs ?? 50),
        }
      : null;
    this.failOpen = options.failOpen ?? false;
    this.completeRetries = options.completeRetries ?? DEFAULTS.completeRetries;
    this.onEvent = options.onEvent;
    this.storeDeadlines = new Deadlines(this.storeTimeoutMs);
    this.timedOut = {
      count: 0,
      max: bound('maxTimedOutCalls', options.maxTimedOutCalls ?? DEFAULTS.maxTimedOutCalls),
    };
    // A third, not a half: the first beat starts its clock when the claim's answer arrives, after the
    // lease already began in the store, and its renewal still has to travel there. With a half, a 1 s
    // lease and a store 200 ms away each way left 100 ms for event-loop delays; a third leaves 267 ms.
    this.heartbeats = new Deadlines(this.leaseMs / 3);
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
        acquired = await this.call('acquire', key, () => this.store.acquire(key, claim), claim.token);
      } catch (error) {
        if (isIdempotencyError(error, 'record_corrupt')) {
          this.emit({ type: 'record_corrupt', key, operation: 'acquire', error });
          throw error;
        }
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
          const error = new IdempotencyError(
            'record_corrupt',
            `[${this.store.name}] completed record without a response`,
            { details: { key, store: this.store.name } },
          );
          this.emit({ type: 'record_corrupt', key, operation: 'acquire', error });
          throw error;
        }
        this.emit({ type: 'replay', key });
        return { replayed: true, response: record.response };
      }
      // in_flight, or (with clocks apart) a lease the store still counts as live.
      this.emit({ type: 'in_flight', key });
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw inFlight(key, this.store.name, record, this.ttlMs);
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
    const heartbeat = this.heartbeat
      ? new Heartbeat(this.heartbeats, operation, this.ttlMs - this.leaseMs, (beat) => this.extendLease(beat))
      : null;
    let value: T;
    let response: StoredResponse | null;
    try {
      value = await work(operation);
      // Awaited only when it is a promise: settling is usually synchronous, and each await is a tick.
      const settled = settle(value, operation);
      response = isThenable(settled) ? await settled : settled;
    } catch (error) {
      heartbeat?.stop();
      // Also when the work completed the record itself: its transaction may have rolled back since. The
      // release is fenced (in_flight + our token), so a completion that committed stays.
      await this.release(key, claim.token, operation.completedByWork);
      throw error;
    }
    if (operation.completedByWork || response === null) {
      heartbeat?.stop();
      if (!operation.completedByWork) await this.release(key, claim.token);
    } else {
      // The lease stays renewed until the result is stored: a store that is slow or briefly down at
      // this moment must not let a retry take over and run the work a second time.
      if (heartbeat) heartbeat.settling = true;
      await this.complete(operation, response, heartbeat);
    }
    return { replayed: false as const, value, operation };
  }

  /** Renew the lease of a running operation; a refusal means another holder took over. */
  private async extendLease(heartbeat: Heartbeat): Promise<void> {
    const { storageKey: key, token } = heartbeat.operation;
    try {
      const extended = await this.call('extend', key, () => this.store.extend(key, token, this.leaseMs));
      // An answer arriving after the work finished may have been decided after our own complete or
      // release (another pooled connection): it says nothing about a lost lease.
      if (heartbeat.stopped) return;
      if (!extended) {
        heartbeat.stop();
        // While the result is being stored, a refused renewal may just mean it was stored; the
        // completion's own answer says whether the lease was lost.
        if (heartbeat.settling) return;
        this.emit({ type: 'lease_lost', key, operation: 'extend' });
        heartbeat.operation.loseLease();
      }
    } catch (error) {
      this.emit({ type: 'store_error', key, operation: 'extend', error });
    }
  }

  /** Release our claim; `refusalExpected` when a refusal does not mean the lease was lost. */
  private async release(key: string, token: string, refusalExpected = false): Promise<void> {
    try {
      const released = await this.call('release', key, () => this.store.release(key, token, this.ttlMs));
      if (!released && !refusalExpected) void this.refused(key, token, 'release');
    } catch (error) {
      // The lease will run out and a retry with the same payload takes over: nothing is lost.
      this.emit({ type: 'store_error', key, operation: 'release', error });
    }
  }

  /**
   * Report `lease_lost` for a write of ours the store refused, unless it had landed all the same: the
   * engine retries a `complete` that timed out after it was written, a client library re-sends a request
   * whose answer was lost, and the repeat is then refused. The record says which (one `get`, only after
   * a refusal); in the background, so that the request is not held for it.
   */
  private async refused(key: string, token: string, operation: 'complete' | 'release'): Promise<void> {
    try {
      const record = await this.call('get', key, () => this.store.get(key));
      const landed = operation === 'complete' ? 'completed' : 'failed';
      if (record !== null && record.state === landed && record.token === token) return;
    } catch {
      // The record cannot be read: report the refusal as it is.
    }
    this.emit({ type: 'lease_lost', key, operation });
  }

  /** First attempt awaited (so that an immediate retry replays); later ones in the background. */
  private async complete(operation: RunningOperation, response: StoredResponse, heartbeat: Heartbeat | null) {
    if (await this.tryComplete(operation, response)) {
      heartbeat?.stop();
      return;
    }
    void this.retryComplete(operation, response).finally(() => heartbeat?.stop());
  }

  /** One attempt to complete; `false` when the store failed (worth retrying), `true` otherwise. */
  private async tryComplete(operation: RunningOperation, response: StoredResponse): Promise<boolean> {
    const { storageKey: key, token } = operation;
    try {
      const completed = await this.call('complete', key, () =>
        this.store.complete(key, token, response, this.ttlMs),
      );
      if (!completed) void this.refused(key, token, 'complete');
      return true;
    } catch (error) {
      this.emit({ type: 'store_error', key, operation: 'complete', error });
      return false;
    }
  }

  private async retryComplete(operation: RunningOperation, response: StoredResponse): Promise<void> {
    for (let retry = 0; retry < this.completeRetries; retry++) {
      await sleep(100 * 2 ** retry);
      if (await this.tryComplete(operation, response)) return;
    }
    this.emit({
      type: 'complete_failed',
      key: operation.storageKey,
      error: new IdempotencyError('store_unavailable', `could not store the result in ${this.store.name}`),
    });
  }

  /**
   * A store call bounded by the store timeout; backend failures become `store_unavailable`. For an
   * acquire, `claimToken` is the claim's token: a claim that lands after the timeout failed the call
   * (the caller got store_unavailable, or fail-open ran the work without it) is released, for nobody
   * will complete it and retries would meet its lease until it runs out. A claim is refused without
   * reaching the store while `maxTimedOutCalls` calls that timed out still wait for their answer; the
   * other calls belong to claims already made, whose number that bounds.
   */
  private call<R>(operation: string, key: string, fn: () => Promise<R>, claimToken?: string): Promise<R> {
    const { timedOut } = this;
    if (claimToken !== undefined && timedOut.count >= timedOut.max) {
      return Promise.reject(
        storeUnavailable(
          this.store.name,
          key,
          `${operation} not sent: ${timedOut.count} earlier calls timed out and the store has not answered them yet`,
        ),
      );
    }
    const call = new StoreCall<R>(this.store.name, operation, key, this.storeTimeoutMs, timedOut);
    const result = new Promise<R>((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    let pending: Promise<R>;
    try {
      pending = fn();
    } catch (error) {
      call.fail(error);
      return result;
    }
    this.storeDeadlines.add(call);
    pending.then(
      (value) => {
        this.storeDeadlines.remove(call);
        if (!call.succeed(value) && claimToken !== undefined && (value as AcquireResult).acquired)
          void this.release(key, claimToken, true);
      },
      (error: unknown) => {
        this.storeDeadlines.remove(call);
        call.fail(error);
      },
    );
    return result;
  }

  /**
   * Tell `onEvent` (`record_corrupt`) about a record the caller found unusable after the engine handed
   * it over: the HTTP layer's check of the headers it would replay.
   */
  reportCorrupt(key: string, error: IdempotencyError): void {
    this.emit({ type: 'record_corrupt', key, error });
  }

  private emit(event: Omit<IdempotencyEvent, 'store'>): void {
    if (!this.onEvent) return;
    try {
      const returned: unknown = this.onEvent({ ...event, store: this.store.name });
      // An async listener's rejection is swallowed too: unhandled, it would end a Node process.
      if (isThenable(returned)) returned.then(undefined, noop);
    } catch {
      // an observer must not break the request
    }
  }
}

/** Something due a fixed delay after it was added, kept in a {@link Deadlines} list. */
abstract class Deadline {
  due = 0;
  prev: Deadline | null = null;
  next: Deadline | null = null;
  listed = false;
  /** Its own timer, where timers cannot be shared (see {@link Deadlines}). */
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  /** Called by the list's timer once `due` has passed (the entry is unlisted first). */
  abstract expire(): void;
}

const monotonicNow =
  typeof globalThis.performance?.now === 'function' ? () => performance.now() : () => Date.now();

/**
 * Entries due one fixed delay after they were added, so in the order they were added: a linked list
 * and one timer for all of them. A timer per store call or per heartbeat (set, then cleared a few
 * microseconds later by a memory store) costs more than the call itself.
 *
 * Like one timer per entry, the shared timer keeps the process alive only while entries are listed.
 */
class Deadlines {
  private head: Deadline | null = null;
  private tail: Deadline | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private referenced = false;
  private firing = false;
  /**
   * Whether one timer may serve every entry: where timers can be unref'd (Node, Bun). Elsewhere each
   * entry gets a timer of its own: on Workers a timer belongs to the request that set it and is dropped
   * when that request ends, so a shared one would leave the deadlines (heartbeats, store timeouts) of
   * the requests still running unfired, and their leases would lapse. Found on the first entry, inside
   * a request: Workers forbid timers at module scope, where engines are usually built.
   */
  private shared: boolean | undefined;

  constructor(private readonly delayMs: number) {}

  add(entry: Deadline): void {
    this.shared ??= timersCanBeShared();
    if (!this.shared) {
      entry.listed = true;
      entry.timer = setTimeout(() => {
        entry.listed = false;
        entry.timer = undefined;
        entry.expire();
      }, this.delayMs);
      return;
    }
    entry.due = monotonicNow() + this.delayMs;
    entry.prev = this.tail;
    entry.next = null;
    entry.listed = true;
    if (this.tail === null) this.head = entry;
    else this.tail.next = entry;
    this.tail = entry;
    if (this.timer !== undefined) {
      if (!this.referenced) this.reference(true);
    } else if (!this.firing) this.arm(this.delayMs);
  }

  remove(entry: Deadline): void {
    if (!entry.listed) return;
    entry.listed = false;
    if (!this.shared) {
      clearTimeout(entry.timer);
      entry.timer = undefined;
      return;
    }
    if (entry.prev === null) this.head = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === null) this.tail = entry.prev;
    else entry.next.prev = entry.prev;
    entry.prev = entry.next = null;
    // The timer stays armed for the next entries, but no longer holds the process open.
    if (this.head === null && this.timer !== undefined) this.reference(false);
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.fire(), Math.max(Math.ceil(ms), 1));
    this.referenced = true;
  }

  private reference(on: boolean): void {
    const timer = this.timer as unknown as { ref(): void; unref(): void };
    if (on) timer.ref();
    else timer.unref();
    this.referenced = on;
  }

  private fire(): void {
    this.timer = undefined;
    const now = monotonicNow();
    // Entries expiring may add new ones (a heartbeat's next beat): those are due later than the head.
    this.firing = true;
    try {
      while (this.head !== null && this.head.due <= now) {
        const entry = this.head;
        this.remove(entry);
        entry.expire();
      }
    } finally {
      this.firing = false;
      if (this.head !== null) this.arm(this.head.due - now);
    }
  }
}

/**
 * A store call in flight: settles with the store's answer or fails when its deadline passes. Once
 * settled it lets go of its caller's promise: a call that timed out stays referenced by the store's
 * pending answer, perhaps for as long as the store hangs, and should hold as little as it can.
 */
class StoreCall<R> extends Deadline {
  resolve: (value: R) => void = noop;
  reject: (error: unknown) => void = noop;
  private settled = false;
  private expired = false;

  constructor(
    private readonly storeName: string,
    private readonly operation: string,
    private readonly key: string,
    private readonly timeoutMs: number,
    /** The engine's count of calls that timed out and still wait for their answer. */
    private readonly timedOut: { count: number },
  ) {
    super();
  }

  /** Deliver the store's answer; `false` when the call had already failed (timed out). */
  succeed(value: R): boolean {
    if (this.answered()) return false;
    this.resolve(value);
    this.resolve = this.reject = noop;
    return true;
  }

  fail(error: unknown): void {
    if (this.answered()) return;
    this.reject(
      isIdempotencyError(error)
        ? error
        : storeUnavailable(this.storeName, this.key, `${this.operation} failed`, error),
    );
    this.resolve = this.reject = noop;
  }

  expire(): void {
    if (this.settled) return;
    this.settled = this.expired = true;
    this.timedOut.count++;
    this.reject(
      storeUnavailable(this.storeName, this.key, `${this.operation} timed out after ${this.timeoutMs} ms`),
    );
    this.resolve = this.reject = noop;
  }

  /** The store answered: `true` when the call had already settled (timed out, or failed to start). */
  private answered(): boolean {
    if (this.expired) {
      this.expired = false;
      this.timedOut.count--;
    }
    if (this.settled) return true;
    this.settled = true;
    return false;
  }
}

/** Renews a running operation's lease every third of a lease (one entry of `beats`) until stopped. */
class Heartbeat extends Deadline {
  stopped = false;
  /** Set once the work finished and its result is being stored. */
  settling = false;
  private busy = false;
  private readonly lastRenewal: number;

  /** `renewableMs`: how long renewals may go on (the record itself ends ttlMs after the claim). */
  constructor(
    private readonly beats: Deadlines,
    readonly operation: RunningOperation,
    renewableMs: number,
    private readonly renew: (heartbeat: Heartbeat) => Promise<void>,
  ) {
    super();
    // Renewing a lease past the record's end would only keep a hung handler's key blocked forever.
    this.lastRenewal = Date.now() + renewableMs;
    beats.add(this);
  }

  expire(): void {
    if (this.stopped || Date.now() > this.lastRenewal) return;
    this.beats.add(this);
    // Like an interval: a beat whose renewal is still pending is skipped.
    if (this.busy) return;
    this.busy = true;
    void this.renew(this).finally(() => {
      this.busy = false;
    });
  }

  stop(): void {
    this.stopped = true;
    this.beats.remove(this);
  }
}

function noop() {}

/** Whether this runtime's timers are objects that can be unref'd (Node, Bun): see {@link Deadlines}. */
function timersCanBeShared(): boolean {
  const probe = setTimeout(noop, 0) as unknown as { ref?: unknown; unref?: unknown } | number;
  clearTimeout(probe as ReturnType<typeof setTimeout>);
  return typeof probe === 'object' && typeof probe.unref === 'function' && typeof probe.ref === 'function';
}

function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
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

/**
 * `in_flight`, with a `Retry-After` of about as long as the work has run so far: a retry then comes
 * when the work is likely done, and polling backs off as it goes on. At least 1 s; at most until the
 * lease ends (when a retry may take a crashed holder over) and 60 s. The work started one ttl before
 * the record's expiry, which renewals do not move (with another ttl elsewhere, the lease bounds it).
 */
function inFlight(key: string, store: string, record: IdempotencyRecord, ttlMs: number): IdempotencyError {
  const now = Date.now();
  const ranMs = now - (record.expiresAt - ttlMs);
  const waitMs = Math.min(ranMs, record.leaseExpiresAt - now);
  const seconds = Math.min(Math.max(Math.ceil(waitMs / 1000), 1), 60);
  return new IdempotencyError('in_flight', 'a request with this Idempotency-Key is still being processed', {
    details: { key, store, retryAfterSeconds: seconds },
  });
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value))
    throw new TypeError(`[idem] ${name} must be a positive number`);
  return value;
}

/** `value` if it is a positive integer or `Infinity` (no bound). */
function bound(name: string, value: number): number {
  if (!(value >= 1) || (Number.isFinite(value) && !Number.isSafeInteger(value)))
    throw new TypeError(`[idem] ${name} must be a positive integer (or Infinity)`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!(value >= 0) || !Number.isFinite(value))
    throw new TypeError(`[idem] ${name} must be a number of at least 0`);
  return value;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
