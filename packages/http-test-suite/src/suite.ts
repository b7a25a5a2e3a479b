import { request as httpRequest } from 'node:http';
import {
  type HttpIdempotencyOptions,
  type IdempotencyErrorCode,
  problemTypeForCode,
  type Store,
  storageKey,
} from '@idem/core';
import { memoryStore } from '@idem/memory';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slowCompleting } from './slow-store.js';
import {
  bigBody,
  CHUNK_INTERVAL_MS,
  createTestApp,
  STREAM_CHUNKS,
  STREAM_EVENTS,
  type TestApp,
  type TestRoute,
  type TestServer,
} from './test-app.js';

/** Which cases to run: all of them, or the core cases that exercise the store through HTTP. */
export type SuiteCases = 'all' | 'core';

/** Options of {@link testHttpBinding}. */
export interface HttpBindingTestOptions {
  /** Shown in the test names, e.g. `"hono"`. */
  name: string;
  /**
   * Start a real HTTP server listening on 127.0.0.1 (port 0) that serves the test routes (see the
   * README) behind the binding configured with `options` (always including `store`). The routes count
   * their executions on `app`. Called a few times per run, with different options.
   */
  start: (options: HttpIdempotencyOptions, app: TestApp) => Promise<TestServer>;
  /**
   * The store the cases run against, made once per run. Default: a fresh `memoryStore()`. The cases
   * use fresh random keys, so a store may be shared with other runs.
   */
  store?: (() => Store | Promise<Store>) | undefined;
  /** Called once after all cases (close store clients). */
  teardown?: ((store: Store) => void | Promise<void>) | undefined;
  /** `'core'` runs only the cases that exercise the store (for Redis, Postgres, ...). Default `'all'`. */
  only?: SuiteCases | undefined;
  /** The status the framework answers when a route throws. Default 500. */
  thrownStatus?: number | undefined;
}

/** Request bodies above this get 413 on the servers the suite starts. */
const MAX_REQUEST_BYTES = 16 * 1024;
/** Response bodies above this are not stored on the servers the suite starts. */
const MAX_RESPONSE_BYTES = 64 * 1024;

interface Sent {
  status: number;
  headers: Headers;
  bytes: Uint8Array;
  text: string;
}

interface SendOptions {
  method?: string;
  /** The raw `Idempotency-Key` header value; omitted when undefined. */
  key?: string | undefined;
  /** A JSON body (sent as `application/json`, serialised as given when a string). */
  json?: unknown;
  /** A raw body (sent as `application/octet-stream` unless headers say otherwise). */
  body?: Uint8Array | ReadableStream<Uint8Array>;
  headers?: Record<string, string>;
}

let counter = 0;
/** A fresh, valid client key. */
function newKey(label: string): string {
  counter++;
  return `${label}-${Date.now().toString(36)}-${counter}-${Math.random().toString(36).slice(2, 10)}`;
}

async function send(server: TestServer, path: string, options: SendOptions = {}): Promise<Sent> {
  const headers = new Headers(options.headers);
  if (options.key !== undefined) headers.set('idempotency-key', options.key);
  let body: RequestInit['body'];
  if (options.json !== undefined) {
    if (!headers.has('content-type')) headers.set('content-type', 'application/json');
    body = typeof options.json === 'string' ? options.json : JSON.stringify(options.json);
  } else if (options.body !== undefined) {
    if (!headers.has('content-type')) headers.set('content-type', 'application/octet-stream');
    body = options.body as RequestInit['body'];
  }
  const init: RequestInit & { duplex?: 'half' } = { method: options.method ?? 'POST', headers };
  if (body !== undefined) init.body = body;
  if (body instanceof ReadableStream) init.duplex = 'half';
  const response = await fetch(server.url + path, init);
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, bytes, text: new TextDecoder().decode(bytes) };
}

/**
 * A keyed JSON POST to `path` exactly as written: `fetch` normalises the URL (it drops a bare `?`), a
 * client on a raw socket does not.
 */
function sendRaw(server: TestServer, path: string, key: string, body: unknown): Promise<Sent> {
  const text = JSON.stringify(body);
  return new Promise<Sent>((resolve, reject) => {
    const sent = httpRequest(
      server.url + path,
      {
        method: 'POST',
        path,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
          'idempotency-key': key,
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const bytes = new Uint8Array(Buffer.concat(chunks));
          const headers = new Headers();
          for (const [name, value] of Object.entries(response.headers))
            for (const each of [value ?? []].flat()) headers.append(name, each);
          resolve({
            status: response.statusCode ?? 0,
            headers,
            bytes,
            text: new TextDecoder().decode(bytes),
          });
        });
      },
    );
    sent.on('error', reject);
    sent.end(text);
  });
}

function json(sent: Sent): Record<string, unknown> {
  return JSON.parse(sent.text) as Record<string, unknown>;
}

function expectProblem(sent: Sent, code: IdempotencyErrorCode, status: number): Record<string, unknown> {
  expect(sent.status, sent.text).toBe(status);
  expect(sent.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const problem = json(sent);
  expect(problem).toMatchObject({ type: problemTypeForCode(code), status, code });
  expect(typeof problem['title']).toBe('string');
  expect(sent.headers.get('idempotent-replayed')).toBeNull();
  return problem;
}

function expectReplay(replay: Sent, original: Sent): void {
  expect(replay.status).toBe(original.status);
  expect(replay.headers.get('idempotent-replayed')).toBe('true');
  expect(Buffer.compare(Buffer.from(replay.bytes), Buffer.from(original.bytes))).toBe(0);
}

function retryAfter(sent: Sent): number {
  const value = sent.headers.get('retry-after');
  expect(value).toMatch(/^\d+$/);
  return Number(value);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `route` has run more than `count` times on `app` (the request reached the handler). */
async function ranMoreThan(app: TestApp, route: TestRoute, count: number) {
  const deadline = Date.now() + 5_000;
  while (app.executions(route) <= count) {
    if (Date.now() > deadline) throw new Error(`route ${route} did not run`);
    await sleep(5);
  }
}

/** A store whose every call fails, as a backend that is down would. */
function downStore(): Store {
  const down = () => Promise.reject(new Error('connection refused (the store is down on purpose)'));
  return {
    name: 'down',
    acquire: down,
    complete: down,
    release: down,
    extend: down,
    get: down,
    delete: down,
  };
}

/**
 * The HTTP conformance suite every idem binding runs, through real HTTP requests against a real
 * listening server. Call it from a test file:
 *
 * ```ts
 * testHttpBinding({ name: 'hono', start: (options, app) => startHonoApp(options, app) });
 * ```
 *
 * See the package README for the routes `start` must serve and the list of cases.
 */
export function testHttpBinding(options: HttpBindingTestOptions): void {
  const all = (options.only ?? 'all') === 'all';
  const thrownStatus = options.thrownStatus ?? 500;
  let store: Store;

  /** Starts a server for the enclosing `describe` with the given extra options. */
  function useServer(extra: () => Partial<HttpIdempotencyOptions> = () => ({})) {
    const handle = { server: undefined as unknown as TestServer, app: createTestApp() };
    beforeAll(async () => {
      handle.server = await options.start(
        { store, maxRequestBytes: MAX_REQUEST_BYTES, maxResponseBytes: MAX_RESPONSE_BYTES, ...extra() },
        handle.app,
      );
    });
    afterAll(async () => {
      await handle.server?.close();
    });
    return handle;
  }

  describe(`http binding conformance: ${options.name}${all ? '' : ' (core cases)'}`, () => {
    beforeAll(async () => {
      store = options.store ? await options.store() : memoryStore();
    });
    afterAll(async () => {
      if (store) await options.teardown?.(store);
    });

    describe('replays', () => {
      const s = useServer();

      it('runs a new request once and replays it byte-exact with Idempotent-Replayed: true', async () => {
        const key = newKey('replay');
        const payload = { item: 'book', quantity: 2, note: 'caf\u00e9 \u{1F600}' };
        const first = await send(s.server, '/orders', { key, json: payload });
        expect(first.status, first.text).toBe(201);
        expect(first.headers.get('idempotent-replayed')).toBeNull();
        expect(first.headers.get('content-type')).toMatch(/^application\/json/);
        const body = json(first);
        expect(body).toMatchObject({ received: payload });
        expect(first.headers.get('x-order-id')).toBe(body['id']);
        const runs = s.app.executions('orders');
        expect(runs).toBe(body['execution']);

        const again = await send(s.server, '/orders', { key, json: payload });
        expectReplay(again, first);
        expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
        expect(again.headers.get('x-order-id')).toBe(body['id']);
        expect(s.app.executions('orders')).toBe(runs);
      });

      it('replays a binary body with all 256 byte values byte-exact', async () => {
        const key = newKey('binary');
        const payload = Uint8Array.from({ length: 1024 }, (_, i) => (i < 512 ? i % 256 : 255 - (i % 256)));
        const first = await send(s.server, '/binary', { key, body: payload });
        expect(first.status, first.text).toBe(200);
        expect(first.headers.get('content-type')).toBe('application/octet-stream');
        expect(Array.from(first.bytes)).toEqual(Array.from(payload));
        const runs = s.app.executions('binary');

        const again = await send(s.server, '/binary', { key, body: payload });
        expectReplay(again, first);
        expect(again.headers.get('content-type')).toBe('application/octet-stream');
        expect(Array.from(again.bytes)).toEqual(Array.from(payload));
        expect(s.app.executions('binary')).toBe(runs);
      });

      it('replays a body just under maxResponseBytes byte-exact', async () => {
        const key = newKey('under');
        const bytes = MAX_RESPONSE_BYTES - 100;
        const first = await send(s.server, `/big?bytes=${bytes}`, { key });
        expect(first.status).toBe(200);
        expect(Buffer.compare(Buffer.from(first.bytes), Buffer.from(bigBody(bytes)))).toBe(0);
        const runs = s.app.executions('big');
        expectReplay(await send(s.server, `/big?bytes=${bytes}`, { key }), first);
        expect(s.app.executions('big')).toBe(runs);
      });

      if (all) {
        it('does not replay Set-Cookie, but replays the other headers', async () => {
          const key = newKey('cookie');
          const first = await send(s.server, '/orders', { key, json: { item: 'pen' } });
          expect(first.status).toBe(201);
          expect(first.headers.getSetCookie()).toEqual([expect.stringMatching(/^last_order=/)]);
          const again = await send(s.server, '/orders', { key, json: { item: 'pen' } });
          expectReplay(again, first);
          expect(again.headers.getSetCookie()).toEqual([]);
          expect(again.headers.get('x-order-id')).toBe(first.headers.get('x-order-id'));
          expect(again.headers.get('content-length')).toBe(String(first.bytes.length));
        });

        it('gives the handler its context: the unquoted key and the storage key of (scope, key)', async () => {
          const key = newKey('context');
          const anonymous = await send(s.server, '/context', { key: `"${key}"` });
          expect(anonymous.status, anonymous.text).toBe(200);
          expect(json(anonymous)['context']).toEqual({
            key,
            storageKey: await storageKey(key, ''),
            fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/),
          });
          const other = newKey('context');
          const scoped = await send(s.server, '/context', {
            key: other,
            headers: { authorization: 'Bearer ctx' },
          });
          expect(json(scoped)['context']).toMatchObject({
            key: other,
            storageKey: await storageKey(other, 'Bearer ctx'),
          });
        });
      }
    });

    describe('concurrency', () => {
      const s = useServer();
      const waiting = useServer(() => ({ wait: { timeoutMs: 5_000, pollMs: 20 } }));

      it('runs 100 concurrent requests with one key exactly once; the others get 409 or the replay', async () => {
        const key = newKey('race');
        const before = s.app.executions('slow');
        const results = await Promise.all(
          Array.from({ length: 100 }, () => send(s.server, '/slow?ms=300', { key, json: { n: 1 } })),
        );
        expect(s.app.executions('slow')).toBe(before + 1);
        const ok = results.filter((result) => result.status === 201);
        expect(ok.length).toBeGreaterThanOrEqual(1);
        expect(new Set(ok.map((result) => result.text)).size).toBe(1);
        for (const result of results) {
          if (result.status !== 201) expectProblem(result, 'in_flight', 409);
        }
        expectReplay(await send(s.server, '/slow?ms=300', { key, json: { n: 1 } }), ok[0]!);
        expect(s.app.executions('slow')).toBe(before + 1);
      });

      it('answers 409 with Retry-After while the first request runs, and replays once it is done', async () => {
        const key = newKey('inflight');
        const before = s.app.executions('slow');
        const first = send(s.server, '/slow?ms=1000', { key, json: { n: 2 } });
        await ranMoreThan(s.app, 'slow', before);
        const conflict = await send(s.server, '/slow?ms=1000', { key, json: { n: 2 } });
        const problem = expectProblem(conflict, 'in_flight', 409);
        expect(retryAfter(conflict)).toBeGreaterThanOrEqual(1);
        expect(problem['retryAfter']).toBe(retryAfter(conflict));
        const original = await first;
        expect(original.status).toBe(201);
        expectReplay(await send(s.server, '/slow?ms=1000', { key, json: { n: 2 } }), original);
        expect(s.app.executions('slow')).toBe(before + 1);
      });

      it('in wait mode, holds a duplicate until the first request is done and replays it', async () => {
        const key = newKey('wait');
        const before = waiting.app.executions('slow');
        const first = send(waiting.server, '/slow?ms=400', { key, json: { n: 3 } });
        await ranMoreThan(waiting.app, 'slow', before);
        const duplicate = await send(waiting.server, '/slow?ms=400', { key, json: { n: 3 } });
        const original = await first;
        expect(original.status).toBe(201);
        expect(original.headers.get('idempotent-replayed')).toBeNull();
        expectReplay(duplicate, original);
        expect(waiting.app.executions('slow')).toBe(before + 1);
      });
    });

    describe('fingerprints', () => {
      const s = useServer();

      it('answers 422 to the same key with a different body, whatever the record state', async () => {
        const key = newKey('mismatch');
        const first = await send(s.server, '/orders', { key, json: { item: 'book' } });
        expect(first.status).toBe(201);
        const runs = s.app.executions('orders');
        expectProblem(await send(s.server, '/orders', { key, json: { item: 'lamp' } }), 'key_mismatch', 422);
        expectProblem(await send(s.server, '/binary', { key, json: { item: 'book' } }), 'key_mismatch', 422);
        expect(s.app.executions('orders')).toBe(runs);
        expect(s.app.executions('binary')).toBe(0);
      });

      it('treats /orders? (an empty query) as the same request as /orders', async () => {
        const key = newKey('empty-query');
        const first = await send(s.server, '/orders', { key, json: { item: 'book' } });
        expect(first.status).toBe(201);
        const runs = s.app.executions('orders');
        expectReplay(await sendRaw(s.server, '/orders?', key, { item: 'book' }), first);
        expectProblem(await sendRaw(s.server, '/orders?x', key, { item: 'book' }), 'key_mismatch', 422);
        expect(s.app.executions('orders')).toBe(runs);
      });

      it('treats the same JSON with its keys in another order as the same request', async () => {
        const key = newKey('order');
        const first = await send(s.server, '/orders', {
          key,
          json: '{"item":"book","quantity":2,"tags":["a","b"]}',
        });
        expect(first.status).toBe(201);
        const runs = s.app.executions('orders');
        const again = await send(s.server, '/orders', {
          key,
          json: '{ "tags": ["a","b"], "quantity": 2, "item": "book" }',
        });
        expectReplay(again, first);
        expect(s.app.executions('orders')).toBe(runs);
        // Array order is meaningful.
        expectProblem(
          await send(s.server, '/orders', { key, json: '{"item":"book","quantity":2,"tags":["b","a"]}' }),
          'key_mismatch',
          422,
        );
      });
    });

    describe('failures', () => {
      const s = useServer();

      it('releases the key after a 5xx, so that a retry runs again (and is then replayed)', async () => {
        const key = newKey('fail');
        const before = s.app.executions('fail');
        const failed = await send(s.server, '/fail', { key, json: { n: 1 } });
        expect(failed.status).toBe(500);
        expect(failed.headers.get('idempotent-replayed')).toBeNull();
        const retried = await send(s.server, '/fail', { key, json: { n: 1 } });
        expect(retried.status, retried.text).toBe(201);
        expect(retried.headers.get('idempotent-replayed')).toBeNull();
        expect(s.app.executions('fail')).toBe(before + 2);
        expectReplay(await send(s.server, '/fail', { key, json: { n: 1 } }), retried);
        expect(s.app.executions('fail')).toBe(before + 2);
        // The failed record kept its fingerprint.
        expectProblem(await send(s.server, '/fail', { key, json: { n: 2 } }), 'key_mismatch', 422);
      });

      it("answers with the framework's error response when the route throws, and a retry runs again", async () => {
        const key = newKey('throw');
        const before = s.app.executions('throw');
        const first = await send(s.server, '/throw', { key, json: { n: 1 } });
        expect(first.status).toBe(thrownStatus);
        expect(first.headers.get('idempotent-replayed')).toBeNull();
        const second = await send(s.server, '/throw', { key, json: { n: 1 } });
        expect(second.status).toBe(thrownStatus);
        expect(second.headers.get('idempotent-replayed')).toBeNull();
        expect(s.app.executions('throw')).toBe(before + 2);
      });

      it('runs two callers (Authorization) with one key as two operations, never leaking responses', async () => {
        const key = newKey('scope');
        const payload = { item: 'shared' };
        const alice = await send(s.server, '/orders', {
          key,
          json: payload,
          headers: { authorization: 'Bearer alice' },
        });
        const bob = await send(s.server, '/orders', {
          key,
          json: payload,
          headers: { authorization: 'Bearer bob' },
        });
        expect(alice.status).toBe(201);
        expect(bob.status).toBe(201);
        expect(bob.headers.get('idempotent-replayed')).toBeNull();
        expect(json(bob)['id']).not.toBe(json(alice)['id']);
        const anonymous = await send(s.server, '/orders', { key, json: payload });
        expect(anonymous.headers.get('idempotent-replayed')).toBeNull();
        const runs = s.app.executions('orders');
        expectReplay(
          await send(s.server, '/orders', { key, json: payload, headers: { authorization: 'Bearer alice' } }),
          alice,
        );
        expectReplay(
          await send(s.server, '/orders', { key, json: payload, headers: { authorization: 'Bearer bob' } }),
          bob,
        );
        expect(s.app.executions('orders')).toBe(runs);
      });
    });

    describe('thrown errors', () => {
      const storing = useServer(() => ({ storeStatus: () => true }));

      it('releases the key after a throw even when storeStatus would store the error status', async () => {
        const stored = newKey('stored-500');
        const failed = await send(storing.server, '/fail', { key: stored, json: { n: 1 } });
        expect(failed.status).toBe(500);
        expectReplay(await send(storing.server, '/fail', { key: stored, json: { n: 1 } }), failed);

        const key = newKey('throw-stored');
        const before = storing.app.executions('throw');
        const first = await send(storing.server, '/throw', { key, json: { n: 1 } });
        expect(first.status).toBe(thrownStatus);
        const second = await send(storing.server, '/throw', { key, json: { n: 1 } });
        expect(second.status).toBe(thrownStatus);
        expect(second.headers.get('idempotent-replayed')).toBeNull();
        expect(storing.app.executions('throw')).toBe(before + 2);
      });
    });

    describe('responses that are not stored', () => {
      const s = useServer();

      it('sends an oversize response in full once, runs it once, and answers 410 to a retry', async () => {
        const key = newKey('big');
        const bytes = MAX_RESPONSE_BYTES * 3 + 17;
        const before = s.app.executions('big');
        const first = await send(s.server, `/big?bytes=${bytes}`, { key });
        expect(first.status).toBe(200);
        expect(first.bytes.length).toBe(bytes);
        expect(Buffer.compare(Buffer.from(first.bytes), Buffer.from(bigBody(bytes)))).toBe(0);
        const retry = await send(s.server, `/big?bytes=${bytes}`, { key });
        const problem = expectProblem(retry, 'response_not_stored', 410);
        expect(problem['reason']).toBe('too_large');
        expect(s.app.executions('big')).toBe(before + 1);
      });

      it('streams an event stream through untouched, runs it once, and answers 410 to a retry', async () => {
        const key = newKey('stream');
        const before = s.app.executions('stream');
        const first = await send(s.server, '/stream', { key });
        expect(first.status).toBe(200);
        expect(first.headers.get('content-type')).toMatch(/^text\/event-stream/);
        expect(first.text).toBe(STREAM_EVENTS.join(''));
        const retry = await send(s.server, '/stream', { key });
        const problem = expectProblem(retry, 'response_not_stored', 410);
        expect(problem['reason']).toBe('streaming');
        expect(s.app.executions('stream')).toBe(before + 1);
      });

      it('streams a response that is not an event stream chunk by chunk as it is written, and runs it once', async () => {
        const key = newKey('chunks');
        const before = s.app.executions('chunks');
        const response = await fetch(`${s.server.url}/chunks`, {
          method: 'POST',
          headers: { 'idempotency-key': key },
        });
        expect(response.status, 'the binding serves POST /chunks (see the README)').toBe(200);
        expect(response.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
        const decoder = new TextDecoder();
        const reader = response.body!.getReader();
        const arrivals: Array<{ at: number; text: string }> = [];
        let text = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          text += decoder.decode(value, { stream: true });
          arrivals.push({ at: Date.now(), text });
        }
        const whole = STREAM_CHUNKS.join('');
        expect(text).toBe(whole);
        // The first chunk came alone, well before the last (written 4 intervals later): a binding that
        // buffers the stream delivers everything at once.
        const first = arrivals[0]!;
        const last = arrivals[arrivals.length - 1]!;
        expect(first.text.length).toBeLessThan(whole.length);
        expect(arrivals.length).toBeGreaterThanOrEqual(3);
        expect(last.at - first.at).toBeGreaterThanOrEqual(CHUNK_INTERVAL_MS * 2);
        expect(s.app.executions('chunks')).toBe(before + 1);

        // Stored whole (it fits in maxResponseBytes) and replayed, or not stored (410): never run again.
        const retry = await send(s.server, '/chunks', { key });
        if (retry.status === 410) {
          expect(expectProblem(retry, 'response_not_stored', 410)['reason']).toBe('streaming');
        } else {
          expect(retry.status).toBe(200);
          expect(retry.headers.get('idempotent-replayed')).toBe('true');
          expect(retry.text).toBe(whole);
        }
        expect(s.app.executions('chunks')).toBe(before + 1);
      });
    });

    if (!all) return;

    // A client that got the whole response and retries at once must meet the completed record: the
    // response's end waits for the store's answer, whatever the body (stored, too large, streamed).
    describe('a store slow to complete', () => {
      const s = useServer(() => ({ store: slowCompleting(store, 250) }));

      it('a retry sent as soon as the response arrived is replayed', async () => {
        const key = newKey('slow-complete');
        const first = await send(s.server, '/orders', { key, json: { item: 'book' } });
        expect(first.status).toBe(201);
        expectReplay(await send(s.server, '/orders', { key, json: { item: 'book' } }), first);
      });

      it('a retry sent as soon as an oversize response arrived gets 410, not 409', async () => {
        const key = newKey('slow-complete-big');
        const bytes = MAX_RESPONSE_BYTES + 1;
        const first = await send(s.server, `/big?bytes=${bytes}`, { key });
        expect(first.bytes.length).toBe(bytes);
        const problem = expectProblem(
          await send(s.server, `/big?bytes=${bytes}`, { key }),
          'response_not_stored',
          410,
        );
        expect(problem['reason']).toBe('too_large');
      });

      it('a retry sent as soon as an event stream ended gets 410, not 409', async () => {
        const key = newKey('slow-complete-stream');
        const first = await send(s.server, '/stream', { key });
        expect(first.text).toBe(STREAM_EVENTS.join(''));
        const problem = expectProblem(await send(s.server, '/stream', { key }), 'response_not_stored', 410);
        expect(problem['reason']).toBe('streaming');
      });
    });

    describe('keys', () => {
      const s = useServer();

      it('answers 400 key_missing to a POST without a key, without running the route', async () => {
        const before = s.app.executions('orders');
        expectProblem(await send(s.server, '/orders', { json: { item: 'book' } }), 'key_missing', 400);
        expect(s.app.executions('orders')).toBe(before);
      });

      it('accepts quoted (structured-field) and bare keys, which mean the same key', async () => {
        const key = newKey('quoted');
        const first = await send(s.server, '/orders', { key: `"${key}"`, json: { item: 'book' } });
        expect(first.status).toBe(201);
        const runs = s.app.executions('orders');
        expectReplay(await send(s.server, '/orders', { key, json: { item: 'book' } }), first);
        expect(s.app.executions('orders')).toBe(runs);
      });

      it('accepts a 255-character key and refuses a 256-character one with 400 key_invalid', async () => {
        const base = newKey('long');
        const ok = await send(s.server, '/orders', { key: base.padEnd(255, 'x'), json: {} });
        expect(ok.status, ok.text).toBe(201);
        const before = s.app.executions('orders');
        expectProblem(
          await send(s.server, '/orders', { key: base.padEnd(256, 'x'), json: {} }),
          'key_invalid',
          400,
        );
        expect(s.app.executions('orders')).toBe(before);
      });

      it('refuses keys with control, space or non-ASCII characters with 400 key_invalid', async () => {
        const before = s.app.executions('orders');
        // Tab is the one control character HTTP lets through to the app; Node's parser (and fetch)
        // refuse the others before any framework sees them.
        const keys = ['a\tb', '"a\tb"', 'a b', 'caf\u00e9', '"caf\u00e9"', '""', '"abc', 'a"b"', '"a\\x"'];
        for (const bad of keys) {
          const sent = await send(s.server, '/orders', { key: bad, json: {} });
          expectProblem(sent, 'key_invalid', 400);
        }
        expect(s.app.executions('orders')).toBe(before);
      });
    });

    describe('request bodies', () => {
      const s = useServer();

      it('answers 413 to a body over maxRequestBytes without running the route', async () => {
        const before = s.app.executions('binary');
        const sent = await send(s.server, '/binary', {
          key: newKey('large'),
          body: new Uint8Array(MAX_REQUEST_BYTES + 1),
        });
        expectProblem(sent, 'request_too_large', 413);
        expect(s.app.executions('binary')).toBe(before);
      });

      it('answers 413 to a chunked body that grows over maxRequestBytes', async () => {
        const before = s.app.executions('binary');
        const chunk = new Uint8Array(4096).fill(7);
        let sentChunks = 0;
        const stream = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sentChunks++ * chunk.length > MAX_REQUEST_BYTES) controller.close();
            else controller.enqueue(chunk);
          },
        });
        expectProblem(
          await send(s.server, '/binary', { key: newKey('chunked'), body: stream }),
          'request_too_large',
          413,
        );
        expect(s.app.executions('binary')).toBe(before);
      });

      it('accepts a body of exactly maxRequestBytes', async () => {
        const payload = new Uint8Array(MAX_REQUEST_BYTES).fill(42);
        const sent = await send(s.server, '/binary', { key: newKey('exact'), body: payload });
        expect(sent.status).toBe(200);
        expect(sent.bytes.length).toBe(MAX_REQUEST_BYTES);
      });
    });

    describe('store down', () => {
      const s = useServer(() => ({ store: downStore() }));

      it('answers 503 with Retry-After when the store fails, without running the route', async () => {
        const before = s.app.executions('orders');
        const sent = await send(s.server, '/orders', { key: newKey('down'), json: { item: 'book' } });
        expectProblem(sent, 'store_unavailable', 503);
        expect(retryAfter(sent)).toBeGreaterThanOrEqual(1);
        expect(s.app.executions('orders')).toBe(before);
      });
    });

    describe('requests idem does not cover', () => {
      const s = useServer();
      const optional = useServer(() => ({ required: false }));

      it('leaves GET and HEAD untouched: no key needed, never stored', async () => {
        const before = s.app.executions('get');
        const plain = await send(s.server, '/orders', { method: 'GET' });
        expect(plain.status).toBe(200);
        const key = newKey('get');
        const keyed = await send(s.server, '/orders', { method: 'GET', key });
        const again = await send(s.server, '/orders', { method: 'GET', key });
        expect(again.status).toBe(200);
        expect(again.headers.get('idempotent-replayed')).toBeNull();
        expect(json(again)['execution']).not.toBe(json(keyed)['execution']);
        expect(s.app.executions('get')).toBe(before + 3);
        const head = await send(s.server, '/orders', { method: 'HEAD', key });
        expect(head.status).toBe(200);
        expect(head.bytes.length).toBe(0);
        expect(head.headers.get('idempotent-replayed')).toBeNull();
        // Not covered means not even parsed: an invalid key on a GET is not refused.
        expect((await send(s.server, '/orders', { method: 'GET', key: 'a b' })).status).toBe(200);
      });

      it('with required: false, passes keyless POSTs through and still covers keyed ones', async () => {
        const before = optional.app.executions('orders');
        const first = await send(optional.server, '/orders', { json: { item: 'book' } });
        const second = await send(optional.server, '/orders', { json: { item: 'book' } });
        expect(first.status).toBe(201);
        expect(second.status).toBe(201);
        expect(second.headers.get('idempotent-replayed')).toBeNull();
        expect(json(first)).toMatchObject({ received: { item: 'book' } });
        expect(optional.app.executions('orders')).toBe(before + 2);
        const context = await send(optional.server, '/context', {});
        expect(context.status).toBe(200);
        expect(json(context)).toEqual({ context: null });

        const key = newKey('optional');
        const keyed = await send(optional.server, '/orders', { key, json: { item: 'book' } });
        expectReplay(await send(optional.server, '/orders', { key, json: { item: 'book' } }), keyed);
        expect(optional.app.executions('orders')).toBe(before + 3);
        expectProblem(await send(optional.server, '/orders', { key: 'a b', json: {} }), 'key_invalid', 400);
      });
    });
  });
}
