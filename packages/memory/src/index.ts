import {
  type AcquireResult,
  type Claim,
  type IdempotencyRecord,
  type OmittedBody,
  type RecordState,
  type Store,
  type StoredResponse,
  transition,
} from '@idem/core';

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /**
   * Most records kept. When a new key would exceed it, the store evicts expired records first, then
   * completed or failed ones, oldest settled first. An in-flight record is never evicted (that could let
   * its work run twice): when only in-flight records are left, the new claim still succeeds and the
   * bound is exceeded until some of them settle. Default 100 000; `Infinity` for no bound (expired
   * records are still dropped).
   */
  maxEntries?: number | undefined;
  /**
   * Most bytes of stored responses kept (bodies, plus the characters of their headers). A completion
   * that takes the store over it evicts as `maxEntries` does; a single response larger than this is
   * stored without its body, marked `omitted: 'too_large'` (the work still never runs twice; a retry
   * learns that the response was not kept). Default 64 MiB; `Infinity` for no bound.
   */
  maxBytes?: number | undefined;
  /**
   * How often expired records are swept, in ms; `0` turns the sweep off (expired records are then
   * dropped only when their key is touched or evicted). The timer starts with the first write and never
   * keeps the process alive. Default 60 000.
   */
  cleanupIntervalMs?: number | undefined;
  /** The clock, in epoch ms. Default `Date.now`; tests inject their own. */
  now?: (() => number) | undefined;
  /** Name used in error messages and engine events. Default `"memory"`. */
  name?: string | undefined;
}

/** An in-process {@link Store}, with a few extras for tests and shutdown. */
export interface MemoryStore extends Store {
  /** How many records are held, including expired ones not swept yet. */
  readonly size: number;
  /** Drop every expired record now. */
  sweep(): void;
  /** Drop every record. */
  clear(): void;
  /** Stop the cleanup timer. The store keeps working; expired records are then dropped lazily. */
  close(): void;
}

/**
 * An in-process Store: records live in a `Map` of this process only, so it suits a single instance,
 * tests and demos, not a fleet of servers (use `@idem/redis`, `@idem/postgres` or `@idem/dynamodb` there).
 *
 * Every operation decides synchronously on the current record, with the state machine of
 * `@idem/core` (`transition`), before it returns: concurrent calls never interleave, so the store is
 * atomic within the process. Bodies are copied on the way in and out, so callers never share bytes
 * with the store.
 *
 * ```ts
 * const store = memoryStore(); // at most 100 000 records and 64 MiB of responses
 * ```
 */
export function memoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  return new InMemoryStore(options);
}

/**
 * A record as the store keeps it: the record's and its response's fields in one object, which is also
 * its place in the expiry queue. One object rather than a record, a response and a queue link: every
 * object a record keeps is copied by the young-generation GC while the record is young and marked by
 * every full GC while it lives (`pnpm --filter @idem/bench record-size`).
 */
class Entry implements Link {
  /** The entry is its own link in the expiry queue of the ttl the record was last written with. */
  readonly entry = this;
  queue: Queue | null = null;
  prev: Link | null = null;
  next: Link | null = null;
  /**
   * Place in the settled queue, while the record is completed or failed; only a bounded store keeps
   * that queue (for eviction), and only it creates the link.
   */
  bySettlement: Link | null = null;
  state: RecordState = 'in_flight';
  fingerprint = '';
  token = '';
  leaseExpiresAt = 0;
  expiresAt = 0;
  /** The stored response, while completed; its headers as `[name, value, name, value, ...]`. */
  status = 0;
  /** What the response counts against `maxBytes`: body bytes plus header characters. */
  bytes = 0;
  headers: readonly string[] = NO_HEADERS;
  body: Uint8Array = NO_BODY;
  omitted: OmittedBody | undefined = undefined;

  constructor(readonly key: string) {}

  /**
   * Take the state machine's next record. Its response is the caller's: the body is copied (which also
   * turns a Node `Buffer` into a plain, unshared array) and the header strings are flattened.
   */
  set(record: IdempotencyRecord, maxBytes: number): void {
    const { response } = record;
    this.state = record.state;
    this.fingerprint = record.fingerprint;
    this.token = record.token;
    this.leaseExpiresAt = record.leaseExpiresAt;
    this.expiresAt = record.expiresAt;
    if (response === null) {
      this.status = 0;
      this.headers = NO_HEADERS;
      this.body = NO_BODY;
      this.omitted = undefined;
      this.bytes = 0;
    } else {
      this.status = response.status;
      // Sized up front: an array grown by push (or built by flat()) keeps room for 17.
      const headers = new Array<string>(2 * response.headers.length);
      let headerBytes = 0;
      response.headers.forEach(([name, value], i) => {
        headers[2 * i] = flatten(name);
        headers[2 * i + 1] = flatten(value);
        headerBytes += name.length + value.length;
      });
      // Too large for the bound: kept without its body, and without its headers if they alone are too
      // large, so that the record itself stays (a retry is told; the work does not run again).
      const keepsBody = headerBytes + response.body.byteLength <= maxBytes;
      const keepsHeaders = headerBytes <= maxBytes;
      this.headers = keepsHeaders ? headers : NO_HEADERS;
      this.body = keepsBody ? new Uint8Array(response.body) : NO_BODY;
      this.omitted = keepsBody ? response.omitted : 'too_large';
      this.bytes = (keepsHeaders ? headerBytes : 0) + this.body.byteLength;
    }
  }

  /**
   * The record as the Store contract describes it, built anew (its headers too); its body is the
   * store's own, see {@link withOwnBody}.
   */
  record(): IdempotencyRecord {
    return {
      state: this.state,
      fingerprint: this.fingerprint,
      token: this.token,
      leaseExpiresAt: this.leaseExpiresAt,
      expiresAt: this.expiresAt,
      response: this.state === 'completed' ? this.response() : null,
    };
  }

  private response(): StoredResponse {
    const headers: Array<readonly [string, string]> = [];
    for (let i = 0; i < this.headers.length; i += 2) {
      headers.push(Object.freeze([this.headers[i]!, this.headers[i + 1]!] as const));
    }
    const response: StoredResponse = {
      status: this.status,
      headers: Object.freeze(headers),
      body: this.body,
    };
    if (this.omitted !== undefined) response.omitted = this.omitted;
    return response;
  }
}

const NO_HEADERS: readonly string[] = Object.freeze([]);
const NO_BODY = new Uint8Array(0);

interface Link {
  readonly entry: Entry;
  queue: Queue | null;
  prev: Link | null;
  next: Link | null;
}

/**
 * An intrusive doubly linked queue: O(1) append, unlink and first, however many entries come and go.
 * (A `Map` used as a queue slows down at its front: deleted slots stay there until it rehashes, and
 * every look at the first entry walks over them.)
 */
class Queue {
  head: Link | null = null;
  private tail: Link | null = null;

  /** For expiry queues, the ttl whose records they hold. */
  constructor(readonly ttlMs = 0) {}

  get empty(): boolean {
    return this.head === null;
  }

  push(link: Link): void {
    link.queue = this;
    link.prev = this.tail;
    link.next = null;
    if (this.tail === null) this.head = link;
    else this.tail.next = link;
    this.tail = link;
  }

  unlink(link: Link): void {
    if (link.prev === null) this.head = link.next;
    else link.prev.next = link.next;
    if (link.next === null) this.tail = link.prev;
    else link.next.prev = link.prev;
    link.queue = link.prev = link.next = null;
  }

  clear(): void {
    this.head = this.tail = null;
  }
}

const ACQUIRED: AcquireResult = Object.freeze({ acquired: true });
const DEFAULT_MAX_ENTRIES = 100_000;
const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

/** `value` if it is a positive integer or `Infinity`. */
function bound(store: string, name: string, value: number): number {
  if (!(value >= 1) || (Number.isFinite(value) && !Number.isInteger(value))) {
    throw new TypeError(`[idem] [${store}] ${name} must be a positive integer (or Infinity)`);
  }
  return value;
}

class InMemoryStore implements MemoryStore {
  readonly name: string;
  private readonly records = new Map<string, Entry>();
  /**
   * One queue per ttl, records in the order they were last written. With a clock that does not go
   * back, that is expiry order within a queue, so each queue's head is its next record to expire; an
   * engine uses one or two ttls, so looking at every head finds an expired record in O(1).
   */
  private readonly queues = new Map<number, Queue>();
  /**
   * Completed and failed records, oldest settled first: the eviction order once nothing is expired.
   * Kept by a bounded store only (a finite `maxEntries` or `maxBytes`): an unbounded one never evicts.
   */
  private readonly settled = new Queue();
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  /** Whether either bound is finite: only then are settled records queued for eviction. */
  private readonly bounded: boolean;
  /** The responses' bytes held, as `maxBytes` counts them. */
  private bytes = 0;
  private readonly cleanupIntervalMs: number;
  private readonly now: () => number;
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  constructor(options: MemoryStoreOptions) {
    this.name = options.name ?? 'memory';
    this.maxEntries = bound(this.name, 'maxEntries', options.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.maxBytes = bound(this.name, 'maxBytes', options.maxBytes ?? DEFAULT_MAX_BYTES);
    this.bounded = Number.isFinite(this.maxEntries) || Number.isFinite(this.maxBytes);
    this.cleanupIntervalMs = options.cleanupIntervalMs ?? 60_000;
    if (!(this.cleanupIntervalMs >= 0) || !Number.isFinite(this.cleanupIntervalMs)) {
      throw new TypeError(`[idem] [${this.name}] cleanupIntervalMs must be a finite number >= 0`);
    }
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.records.size;
  }

  async acquire(key: string, claim: Claim): Promise<AcquireResult> {
    const now = this.now();
    const entry = this.live(key, now);
    const current = entry?.record() ?? null;
    const next = transition(current, { type: 'claim', claim }, now);
    if (next.outcome !== 'execute') return { acquired: false, record: withOwnBody(current!) };
    // The strings of a record are kept for its whole ttl; completing and releasing keep these same ones.
    flatten(key);
    flatten(claim.token);
    flatten(claim.fingerprint);
    this.write(key, entry, next.record!, claim.ttlMs);
    if (entry === undefined && this.records.size > this.maxEntries) this.evict(now, true);
    return ACQUIRED;
  }

  async complete(key: string, token: string, response: StoredResponse, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const entry = this.live(key, now);
    const next = transition(entry?.record() ?? null, { type: 'complete', token, response, ttlMs }, now);
    if (next.outcome !== 'accepted') return false;
    this.write(key, entry, next.record!, ttlMs);
    // Over the bytes only: this record fits on its own, so it is never the one evicted. (Over
    // `maxEntries` on in-flight records, the record just completed would be the next to go.)
    if (this.bytes > this.maxBytes) this.evict(now, false);
    return true;
  }

  async release(key: string, token: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const entry = this.live(key, now);
    const next = transition(entry?.record() ?? null, { type: 'release', token, ttlMs }, now);
    if (next.outcome !== 'accepted') return false;
    this.write(key, entry, next.record!, ttlMs);
    return true;
  }

  async extend(key: string, token: string, leaseMs: number): Promise<boolean> {
    const now = this.now();
    const entry = this.live(key, now);
    const next = transition(entry?.record() ?? null, { type: 'extend', token, leaseMs }, now);
    if (next.outcome !== 'accepted') return false;
    // The expiry is unchanged, so the entry keeps its place in its queue.
    entry!.leaseExpiresAt = next.record!.leaseExpiresAt;
    return true;
  }

  async get(key: string): Promise<IdempotencyRecord | null> {
    const entry = this.live(key, this.now());
    return entry === undefined ? null : withOwnBody(entry.record());
  }

  async delete(key: string): Promise<void> {
    const entry = this.records.get(key);
    if (entry !== undefined) this.remove(entry);
  }

  sweep(): void {
    const now = this.now();
    for (const queue of this.queues.values()) {
      while (queue.head !== null && queue.head.entry.expiresAt <= now) this.remove(queue.head.entry);
    }
  }

  clear(): void {
    this.bytes = 0;
    this.records.clear();
    this.queues.clear();
    this.settled.clear();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The entry of `key` if it has not expired; an expired one is dropped on the way (lazy expiry). */
  private live(key: string, now: number): Entry | undefined {
    const entry = this.records.get(key);
    if (entry === undefined || entry.expiresAt > now) return entry;
    this.remove(entry);
    return undefined;
  }

  private write(key: string, entry: Entry | undefined, record: IdempotencyRecord, ttlMs: number): void {
    if (entry === undefined) {
      entry = new Entry(key);
      this.records.set(key, entry);
      if (this.timer === undefined && !this.closed) this.startTimer();
    } else {
      this.unqueue(entry);
    }
    this.bytes -= entry.bytes;
    entry.set(record, this.maxBytes);
    this.bytes += entry.bytes;
    this.queueFor(ttlMs).push(entry);
    if (record.state !== 'in_flight' && this.bounded) {
      entry.bySettlement ??= { entry, queue: null, prev: null, next: null };
      this.settled.push(entry.bySettlement);
    }
  }

  private remove(entry: Entry): void {
    this.bytes -= entry.bytes;
    this.records.delete(entry.key);
    this.unqueue(entry);
  }

  private unqueue(entry: Entry): void {
    const queue = entry.queue;
    if (queue !== null) {
      queue.unlink(entry);
      if (queue.empty) this.queues.delete(queue.ttlMs);
    }
    if (entry.bySettlement !== null) entry.bySettlement.queue?.unlink(entry.bySettlement);
  }

  private queueFor(ttlMs: number): Queue {
    let queue = this.queues.get(ttlMs);
    if (queue === undefined) {
      queue = new Queue(ttlMs);
      this.queues.set(ttlMs, queue);
    }
    return queue;
  }

  /**
   * Back under `maxBytes`, and under `maxEntries` too when `entries`, if possible: expired records first,
   * then the oldest settled; never in-flight.
   */
  private evict(now: number, entries: boolean): void {
    while ((entries && this.records.size > this.maxEntries) || this.bytes > this.maxBytes) {
      const victim = this.firstExpired(now) ?? this.settled.head?.entry;
      if (victim === undefined) return;
      this.remove(victim);
    }
  }

  private firstExpired(now: number): Entry | undefined {
    for (const queue of this.queues.values()) {
      const head = queue.head?.entry;
      if (head !== undefined && head.expiresAt <= now) return head;
    }
    return undefined;
  }

  private startTimer(): void {
    if (this.cleanupIntervalMs === 0) return;
    // Started on the first write rather than at construction: some runtimes (Workers) forbid timers
    // at module scope, where stores are usually created. The timer holds the store weakly, so that a
    // store dropped without close() can still be collected, and is unref'd (Node, Bun, Deno).
    // WeakRef is missing on some runtimes (Workers before their 2025 compatibility dates): hold it then.
    const store: { deref(): InMemoryStore | undefined } =
      typeof WeakRef === 'function' ? new WeakRef(this) : { deref: () => this };
    const timer = setInterval(() => {
      const self = store.deref();
      if (self === undefined) clearInterval(timer);
      else self.sweep();
    }, this.cleanupIntervalMs);
    (timer as { unref?: () => void }).unref?.();
    (globalThis as { Deno?: { unrefTimer?: (id: unknown) => void } }).Deno?.unrefTimer?.(timer);
    this.timer = timer;
  }
}

/**
 * `text`, flattened: V8 keeps a string built by concatenation (13 characters or more) as a tree of its
 * parts. Node's `crypto.randomUUID()` returns a tree of 14 nodes, a storage key (`prefix + hash`) one;
 * kept for a record's whole ttl, they were 15 of its 32 heap objects and a third of its bytes, each
 * one copied by the young-generation GC and marked by every full GC (`pnpm --filter @idem/bench
 * record-size` measures what a record costs). Reading a character flattens the tree in place and the
 * GC then drops its nodes; on a flat string it costs nothing.
 */
function flatten(text: string): string {
  text.charCodeAt(0);
  return text;
}

/** `record` (built by {@link Entry.record}) with a copy of its body, for a caller: it shares no bytes with the store. */
function withOwnBody(record: IdempotencyRecord): IdempotencyRecord {
  if (record.response !== null) record.response.body = new Uint8Array(record.response.body);
  return record;
}
