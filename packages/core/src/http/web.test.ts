// @idem/memory resolves from source (see vitest.config.ts).

import { memoryStore } from '@idem/memory';
import { describe, expect, it } from 'vitest';
import { requestScopedTimers } from '../test/request-timers.js';
import { captureWebResponse, pathOf, toWebResponse, webHttpRequest, withIdempotency } from './web.js';

describe('pathOf', () => {
  it('is pathname + search of a serialised URL, as new URL gives them', () => {
    for (const url of [
      'http://127.0.0.1:3000/orders',
      'http://127.0.0.1:3000/orders?dry=1&x=%20',
      'https://example.com',
      'https://example.com/',
      'https://user:pass@example.com:8443/a/b?c=http://d/e',
      'http://example.com/orders?',
      'http://example.com/orders?#top',
      'http://example.com/orders?a?b',
      'http://example.com/orders#top',
      'http://example.com/a%2Fb/../c?q=%E2%82%AC',
    ]) {
      const serialised = new URL(url).href;
      const parsed = new URL(serialised);
      expect(pathOf(serialised), url).toBe(parsed.pathname + parsed.search);
    }
  });
});

describe('webHttpRequest', () => {
  it('reads method, path, headers and the body (kept for the route)', async () => {
    const request = webHttpRequest(
      new Request('http://example.com/orders?dry=1', {
        method: 'POST',
        headers: { 'Idempotency-Key': 'k1' },
        body: 'hello',
      }),
    );
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/orders?dry=1');
    expect(request.header('idempotency-key')).toBe('k1');
    expect(request.bodyBytes()).toBeNull();
    expect(new TextDecoder().decode(await request.body(100))).toBe('hello');
    expect(new TextDecoder().decode(request.bodyBytes()!)).toBe('hello');
  });
});

describe('toWebResponse', () => {
  it('builds a body-less response for the statuses that may not have one (205 included)', async () => {
    for (const status of [204, 205, 304]) {
      const response = toWebResponse({ status, headers: [['x-run', '1']], body: new Uint8Array(0) });
      expect(response.status).toBe(status);
      expect(response.body).toBeNull();
      expect(response.headers.get('x-run')).toBe('1');
    }
    const created = toWebResponse({ status: 201, headers: [], body: new TextEncoder().encode('{}') });
    expect(await created.text()).toBe('{}');
  });
});

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A body written chunk by chunk, `ms` apart, as a route streaming tokens does. */
function tokenStream(tokens: readonly string[], ms: number, cancelled: (reason: unknown) => void = () => {}) {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i > 0) await sleep(ms);
      if (i === tokens.length) return controller.close();
      controller.enqueue(encoder.encode(tokens[i++]!));
    },
    cancel: cancelled,
  });
}

/** Read a body, noting when each chunk arrived. */
async function readTimed(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  const chunks: Array<{ at: number; text: string }> = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push({ at: Date.now(), text: decoder.decode(value) });
  }
}

const TOKENS = ['one ', 'two ', 'three ', 'four ', 'five'];

describe('captureWebResponse', () => {
  it('tells a stream from a whole body after another request ended (Workers drop its timers)', async () => {
    const timers = requestScopedTimers();
    try {
      // A whole body, captured in request A, which then ends.
      await timers.run('a', () => captureWebResponse(new Response('{"a":1}'), 100));
      timers.end('a');
      // A stream in request B: passed on as a stream, long before its 200 ms chunks are all written.
      const started = Date.now();
      const capture = await timers.run('b', () =>
        captureWebResponse(new Response(tokenStream(TOKENS, 50)), 1_000),
      );
      expect(capture.streaming).toBe(true);
      expect(Date.now() - started).toBeLessThan(150);
      if (capture.streaming) {
        capture.flush();
        expect(await capture.response.text()).toBe(TOKENS.join(''));
      }
    } finally {
      timers.restore();
    }
  });

  it("reads a response's own cache (as @hono/node-server keeps one) only when its layout is the known one", async () => {
    const cache = Symbol('cache');
    /** Keeps [status, body, headers], as @hono/node-server's Response does. */
    class Known extends Response {
      [cache]: unknown[];
      constructor(body: string, init: ResponseInit) {
        super(body, init);
        this[cache] = [init.status, body, init.headers];
      }
    }
    /** Keeps something else at the body's place: must be read through the public API. */
    class Other extends Response {
      [cache]: unknown[];
      constructor(body: string, init: ResponseInit) {
        super(body, init);
        this[cache] = [init.status, 'not the body', init.headers];
      }
    }
    const known = new Known('{"a":1}', { status: 201 });
    const fromCache = await captureWebResponse(known, 100);
    expect(fromCache).toMatchObject({ streaming: false, response: known });
    expect(decoder.decode((fromCache.captured as { body: Uint8Array }).body)).toBe('{"a":1}');
    const other = await captureWebResponse(new Other('{"b":2}', { status: 201 }), 100);
    expect(decoder.decode((other.captured as { body: Uint8Array }).body)).toBe('{"b":2}');
  });

  it('captures a body built whole at once, and hands it to the client unchanged', async () => {
    const capture = await captureWebResponse(
      new Response('{"a":1}', { status: 201, headers: { 'content-type': 'application/json' } }),
      100,
    );
    expect(capture.streaming).toBe(false);
    if (capture.streaming) return;
    expect(capture.captured.status).toBe(201);
    expect(decoder.decode(capture.captured.body!)).toBe('{"a":1}');
    expect(await capture.response.text()).toBe('{"a":1}');
  });

  it('passes a stream through chunk by chunk, captures it whole, and holds its end until flush', async () => {
    const started = Date.now();
    const capture = await captureWebResponse(new Response(tokenStream(TOKENS, 100)), 1000);
    expect(capture.streaming).toBe(true);
    if (!capture.streaming) return;
    let settled = false;
    void capture.captured.then(() => (settled = true));
    const reader = capture.response.body!.getReader();
    const first = await reader.read();
    // The first token arrived alone, long before the last is written (400 ms after it).
    expect(decoder.decode(first.value)).toBe('one ');
    expect(Date.now() - started).toBeLessThan(300);
    expect(settled).toBe(false);
    let text = 'one ';
    for (let i = 1; i < TOKENS.length; i++) text += decoder.decode((await reader.read()).value);
    expect(text).toBe(TOKENS.join(''));
    // Everything was read, but the end waits for the record.
    const end = reader.read();
    let ended = false;
    void end.then(() => (ended = true));
    const captured = await capture.captured;
    expect(decoder.decode(captured.body!)).toBe(TOKENS.join(''));
    await sleep(50);
    expect(ended).toBe(false);
    capture.flush();
    expect((await end).done).toBe(true);
  });

  it('stores nothing of a stream over maxBytes (never truncated), and sends all of it', async () => {
    const capture = await captureWebResponse(new Response(tokenStream(TOKENS, 20)), 10);
    expect(capture.streaming).toBe(true);
    if (!capture.streaming) return;
    const read = readTimed(capture.response.body!);
    expect(await capture.captured).toMatchObject({ body: null, omitted: 'too_large' });
    capture.flush();
    expect((await read).map((chunk) => chunk.text).join('')).toBe(TOKENS.join(''));
  });

  it('when the client cancels mid-stream, cancels the route’s stream and captures no body', async () => {
    let cancelled = false;
    const capture = await captureWebResponse(
      new Response(tokenStream(TOKENS, 50, () => (cancelled = true))),
      1000,
    );
    if (!capture.streaming) throw new Error('expected a stream');
    const reader = capture.response.body!.getReader();
    await reader.read();
    await reader.cancel('gone');
    expect(await capture.captured).toMatchObject({ body: null, omitted: 'streaming' });
    expect(cancelled).toBe(true);
    capture.flush();
  });

  it('rejects when the route’s stream fails, and fails the client’s once flushed', async () => {
    const failure = new Error('broken');
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent) {
          await sleep(20);
          controller.error(failure);
        } else {
          sent = true;
          controller.enqueue(encoder.encode('x'));
        }
      },
    });
    const capture = await captureWebResponse(new Response(body), 1000);
    if (!capture.streaming) throw new Error('expected a stream');
    const read = readTimed(capture.response.body!);
    await expect(capture.captured).rejects.toBe(failure);
    capture.flush(failure);
    await expect(read).rejects.toBe(failure);
  });
});

describe('withIdempotency', () => {
  const post = (key: string, body: string) =>
    new Request('http://example.com/orders', {
      method: 'POST',
      headers: { 'idempotency-key': key, 'content-type': 'text/plain' },
      body,
    });

  it('streams a response as it is written, stores it once it ended, and replays it', async () => {
    let runs = 0;
    const handler = withIdempotency(
      () => {
        runs++;
        return new Response(tokenStream(TOKENS, 100), {
          headers: { 'content-type': 'application/x-ndjson' },
        });
      },
      { store: memoryStore() },
    );
    const started = Date.now();
    const response = await handler(post('s1', 'x'));
    const chunks = await readTimed(response.body!);
    expect(chunks.map((chunk) => chunk.text).join('')).toBe(TOKENS.join(''));
    // Written 100 ms apart: the first came well before the last, not all together at the end.
    expect(chunks[0]!.text).toBe('one ');
    expect(chunks.at(-1)!.at - chunks[0]!.at).toBeGreaterThanOrEqual(200);
    expect(chunks[0]!.at - started).toBeLessThan(300);
    // The end waited for the record: an immediate retry is a replay.
    const replay = await handler(post('s1', 'x'));
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.text()).toBe(TOKENS.join(''));
    expect(runs).toBe(1);
  });

  it('completes without a body when the client cancels mid-stream: a retry gets 410, never a second run', async () => {
    let runs = 0;
    const handler = withIdempotency(
      () => {
        runs++;
        return new Response(tokenStream(TOKENS, 50));
      },
      { store: memoryStore() },
    );
    const reader = (await handler(post('c1', 'x'))).body!.getReader();
    await reader.read();
    await reader.cancel();
    await sleep(20);
    const retry = await handler(post('c1', 'x'));
    expect(retry.status).toBe(410);
    expect(await retry.json()).toMatchObject({ code: 'response_not_stored', reason: 'streaming' });
    expect(runs).toBe(1);
  });

  it('hands the handler the request it was given (its class and fields), body still readable', async () => {
    class RuntimeRequest extends Request {
      readonly cf = { colo: 'AMS' };
    }
    const seen: Array<{ same: boolean; subclass: boolean; colo: string; body: string }> = [];
    const original = new RuntimeRequest('http://example.com/orders', {
      method: 'POST',
      headers: { 'idempotency-key': 'r1', 'content-type': 'application/json' },
      body: '{"b":2,"a":1}',
    });
    const handler = withIdempotency(
      async (request) => {
        seen.push({
          same: request === original,
          subclass: request instanceof RuntimeRequest,
          colo: (request as RuntimeRequest).cf?.colo,
          body: await request.text(),
        });
        return Response.json({ ok: true });
      },
      { store: memoryStore() },
    );
    expect((await handler(original)).status).toBe(200);
    expect(seen).toEqual([{ same: true, subclass: true, colo: 'AMS', body: '{"b":2,"a":1}' }]);
    // The body was fingerprinted all the same.
    const replay = await handler(
      new RuntimeRequest('http://example.com/orders', {
        method: 'POST',
        headers: { 'idempotency-key': 'r1', 'content-type': 'application/json' },
        body: '{"a":1,"b":2}',
      }),
    );
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    const other = await handler(
      new RuntimeRequest('http://example.com/orders', {
        method: 'POST',
        headers: { 'idempotency-key': 'r1', 'content-type': 'application/json' },
        body: '{"a":2}',
      }),
    );
    expect(other.status).toBe(422);
    expect(seen).toHaveLength(1);
  });
});
