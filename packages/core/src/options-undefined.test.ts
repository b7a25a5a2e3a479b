// @idem/memory resolves from source (see vitest.config.ts).
import { memoryStore } from '@idem/memory';
import { describe, expect, it } from 'vitest';
import { type EncryptedStoreOptions, encryptedStore } from './encryption.js';
import { type EngineOptions, IdempotencyEngine } from './engine.js';
import { isIdempotencyError } from './errors.js';
import { type FingerprintInput, fingerprint } from './fingerprint.js';
import { DEFAULT_KEY_PREFIX, storageKey } from './hash.js';
import type { HttpIdempotencyOptions } from './http/handler.js';
import { type StoredHeadersOptions, storedHeaderFilter } from './http/stored-headers.js';
import { withIdempotency } from './http/web.js';
import { type IdempotentOptions, idempotent } from './idempotent.js';
import { type KeyOptions, parseIdempotencyKey } from './key.js';
import type { Store } from './store.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.

/** An option the caller left unset, typed the way user code has it (`config.ttl` of `ttl?: number`). */
const unset = <T>(): T | undefined => undefined;

/** Every optional engine option, explicitly `undefined`. */
const engineDefaults = (store: Store): EngineOptions => ({
  store,
  ttlMs: unset<number>(),
  leaseMs: unset<number>(),
  heartbeat: unset<boolean>(),
  storeTimeoutMs: unset<number>(),
  wait: unset<false | { timeoutMs: number }>(),
  failOpen: unset<boolean>(),
  completeRetries: unset<number>(),
  onEvent: undefined,
});

/** Every optional HTTP option, explicitly `undefined` (nested `storedHeaders` ones too). */
const httpDefaults = (store: Store): HttpIdempotencyOptions => ({
  ...engineDefaults(store),
  methods: unset<readonly string[]>(),
  required: unset<boolean>(),
  headerName: unset<string>(),
  maxKeyLength: unset<number>(),
  scope: undefined,
  fingerprintHeaders: unset<readonly string[]>(),
  fingerprint: undefined,
  maxRequestBytes: unset<number>(),
  maxResponseBytes: unset<number>(),
  storeStatus: undefined,
  storedHeaders: unset<StoredHeadersOptions>(),
  prefix: unset<string>(),
});

/** A memory store that notes the storage keys it is asked to claim. */
function claimsNoted(): { store: Store; claimed: string[] } {
  const inner = memoryStore();
  const claimed: string[] = [];
  return {
    claimed,
    store: {
      name: inner.name,
      acquire: (key, claim) => {
        claimed.push(key);
        return inner.acquire(key, claim);
      },
      complete: (key, token, response, ttlMs) => inner.complete(key, token, response, ttlMs),
      release: (key, token, ttlMs) => inner.release(key, token, ttlMs),
      extend: (key, token, leaseMs) => inner.extend(key, token, leaseMs),
      get: (key) => inner.get(key),
      delete: (key) => inner.delete(key),
    },
  };
}

describe('options given as undefined mean the defaults', () => {
  it('IdempotencyEngine: the default ttl and lease; wait with pollMs undefined', () => {
    const engine = new IdempotencyEngine(engineDefaults(memoryStore()));
    expect(engine.ttlMs).toBe(24 * 60 * 60 * 1000);
    expect(engine.leaseMs).toBe(15_000);
    const waiting: EngineOptions = {
      store: memoryStore(),
      wait: { timeoutMs: 100, pollMs: unset<number>() },
    };
    expect(() => new IdempotencyEngine(waiting)).not.toThrow();
  });

  it('withIdempotency / createIdempotencyHandler: runs a request once and replays it, as with no options', async () => {
    const { store, claimed } = claimsNoted();
    let runs = 0;
    const handle = withIdempotency(async (request, context) => {
      if (request.method !== 'POST') return new Response('passed through', { status: context ? 500 : 200 });
      runs++;
      if (new URL(request.url).pathname === '/busy') return new Response('later', { status: 503 });
      return new Response(JSON.stringify({ run: runs }), {
        status: 201,
        headers: { 'content-type': 'application/json', 'x-order': `o${runs}`, 'set-cookie': 'a=b' },
      });
    }, httpDefaults(store));
    const post = (path: string, key: string | null, body = '{"a":1}') =>
      handle(
        new Request(`http://api.test${path}`, {
          method: 'POST',
          headers: { authorization: 'Bearer t', ...(key === null ? {} : { 'idempotency-key': key }) },
          body,
        }),
      );

    const first = await post('/orders', 'k-1');
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ run: 1 });
    const replay = await post('/orders', 'k-1');
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('x-order')).toBe('o1'); // storedHeaders: all but the always-dropped ones
    expect(replay.headers.get('set-cookie')).toBeNull();
    expect(await replay.json()).toEqual({ run: 1 });
    expect(runs).toBe(1);
    // Default scope (the Authorization header) and prefix ("idem:").
    expect(claimed).toEqual([
      await storageKey('k-1', 'Bearer t', DEFAULT_KEY_PREFIX),
      await storageKey('k-1', 'Bearer t', DEFAULT_KEY_PREFIX),
    ]);
    // Default fingerprint: the same key with another body is refused.
    expect((await post('/orders', 'k-1', '{"a":2}')).status).toBe(422);
    // Default `required` (true) and `headerName` (Idempotency-Key).
    expect((await post('/orders', null)).status).toBe(400);
    // Default `maxKeyLength` (255).
    expect((await post('/orders', 'k'.repeat(256))).status).toBe(400);
    expect((await post('/orders', 'k'.repeat(255))).status).toBe(201);
    // Default `storeStatus`: a 503 is not stored, the retry runs again.
    expect((await post('/busy', 'k-2')).status).toBe(503);
    expect((await post('/busy', 'k-2')).status).toBe(503);
    expect(runs).toBe(4);
    // Default `methods` (POST, PATCH): a PUT passes through untouched.
    const put = await handle(new Request('http://api.test/orders', { method: 'PUT', body: 'x' }));
    expect(await put.text()).toBe('passed through');
  });

  it('idempotent: runs a call once and replays it', async () => {
    let runs = 0;
    const options: IdempotentOptions<[string], { run: number }> = {
      ...engineDefaults(memoryStore()),
      key: (id) => id,
      scope: undefined,
      fingerprint: undefined,
      serializer: undefined,
      prefix: unset<string>(),
    };
    const charge = idempotent(async (_id: string) => ({ run: ++runs }), options);
    expect(await charge('job-1')).toEqual({ run: 1 });
    expect(await charge('job-1')).toEqual({ run: 1 });
    expect(runs).toBe(1);
  });

  it('encryptedStore: acceptPlaintext undefined refuses a plaintext record (default false)', async () => {
    const inner = memoryStore();
    const options: EncryptedStoreOptions = {
      keys: [{ id: 'k1', key: new Uint8Array(32).fill(1) }],
      acceptPlaintext: unset<boolean>(),
    };
    const store = encryptedStore(inner, options);
    const claim = { fingerprint: 'fp', token: 't', leaseMs: 60_000, ttlMs: 60_000 };
    await inner.acquire('plain', claim);
    await inner.complete('plain', 't', { status: 200, headers: [], body: new Uint8Array([1]) }, 60_000);
    const read = await store.get('plain').catch((error: unknown) => error);
    expect(isIdempotencyError(read, 'record_corrupt')).toBe(true);
  });

  it('parseIdempotencyKey: maxKeyLength undefined is 255', () => {
    const options: KeyOptions = { maxKeyLength: unset<number>() };
    expect(parseIdempotencyKey('k'.repeat(255), options)).toBe('k'.repeat(255));
    expect(() => parseIdempotencyKey('k'.repeat(256), options)).toThrow(/longer than 255/);
  });

  it('fingerprint: headers and contentType undefined hash like absent ones', async () => {
    const body = new TextEncoder().encode('{"b":1,"a":2}');
    const input: FingerprintInput = {
      method: 'POST',
      path: '/orders',
      body,
      contentType: undefined,
      headers: unset<ReadonlyArray<readonly [string, string]>>(),
    };
    expect(await fingerprint(input)).toBe(await fingerprint({ method: 'POST', path: '/orders', body }));
  });

  it('storedHeaderFilter: allow and deny undefined keep all but the always-dropped headers', () => {
    const filter = storedHeaderFilter({
      allow: unset<readonly string[]>(),
      deny: unset<readonly string[]>(),
    });
    expect(
      filter([
        ['X-Order', 'o1'],
        ['Set-Cookie', 'a=b'],
      ]),
    ).toEqual([['x-order', 'o1']]);
  });
});
