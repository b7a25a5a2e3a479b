import { Readable } from 'node:stream';
import { isIdempotencyError } from '@idem/core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createIdempotentFetch, type IdempotentFetchOptions } from './idempotent-fetch.js';
import type { RequestBody } from './replayable-body.js';
import { answer, drive, flush, networkError, scriptedFetch, tick, useFakeClock } from './scripted-fetch.js';

const URL_ = 'https://api.test/uploads';
const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

beforeEach(useFakeClock);
afterEach(() => {
  vi.useRealTimers();
});

/** Send `init` through a server that loses the first response, so the body goes out twice. */
async function sendTwice(
  input: string | URL | Request,
  init?: RequestInit,
  options: Omit<IdempotentFetchOptions, 'fetch'> = {},
) {
  const server = scriptedFetch(networkError(), answer(201));
  const fetch = createIdempotentFetch({ fetch: server.fetch, ...options });
  const response = await drive(fetch(input, init));
  return { response, seen: server.seen };
}

function streamOf(...chunks: string[]) {
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
      controller.close();
    },
  });
  return { stream };
}

describe('replayable bodies', () => {
  it.each<[string, () => RequestBody, string, string | null]>([
    ['a string', () => '{"a":1}', '{"a":1}', 'text/plain;charset=UTF-8'],
    ['a Uint8Array', () => new TextEncoder().encode('bytes'), 'bytes', null],
    ['an ArrayBuffer', () => new TextEncoder().encode('buffer').buffer, 'buffer', null],
    [
      'URLSearchParams',
      () => new URLSearchParams({ a: '1', b: 'x y' }),
      'a=1&b=x+y',
      'application/x-www-form-urlencoded;charset=UTF-8',
    ],
    ['a Blob', () => new Blob(['blob'], { type: 'text/csv' }), 'blob', 'text/csv'],
  ])('sends %s again, byte for byte', async (_, body, expected, contentType) => {
    const { response, seen } = await sendTwice(URL_, { method: 'POST', body: body() });
    expect(response.status).toBe(201);
    expect(seen.map((s) => text(s.body))).toEqual([expected, expected]);
    expect(seen.map((s) => s.headers.get('content-type'))).toEqual([contentType, contentType]);
  });

  it('sends FormData with the same multipart boundary every time (else the fingerprint changes)', async () => {
    const form = new FormData();
    form.append('note', 'hello');
    form.append('file', new Blob(['file body'], { type: 'text/plain' }), 'a.txt');
    const { seen } = await sendTwice(URL_, { method: 'POST', body: form });
    const [first, second] = seen;
    expect(first?.headers.get('content-type')).toMatch(/^multipart\/form-data; ?boundary=/);
    expect(second?.headers.get('content-type')).toBe(first?.headers.get('content-type'));
    expect(text(second?.body)).toBe(text(first?.body));
    expect(text(first?.body)).toContain('file body');
  });

  it('buffers a ReadableStream once and sends the same bytes on the retry', async () => {
    const { stream } = streamOf('chunk-1,', 'chunk-2');
    const { seen } = await sendTwice(URL_, { method: 'POST', body: stream });
    expect(seen.map((s) => text(s.body))).toEqual(['chunk-1,chunk-2', 'chunk-1,chunk-2']);
  });

  it('buffers an async iterable body (Node streams, generators)', async () => {
    async function* chunks() {
      yield 'one,';
      yield new TextEncoder().encode('two');
    }
    const body = chunks() as unknown as RequestBody;
    const { seen } = await sendTwice(URL_, { method: 'POST', body });
    expect(seen.map((s) => text(s.body))).toEqual(['one,two', 'one,two']);
  });

  it('refuses a stream over maxBufferBytes with request_too_large, before any attempt', async () => {
    const cancel = vi.fn();
    // Endless: the only way it ends is being cancelled.
    const stream = new ReadableStream<Uint8Array>({
      pull: (controller) => controller.enqueue(new Uint8Array(5)),
      cancel,
    });
    const server = scriptedFetch(answer(201));
    const fetch = createIdempotentFetch({ fetch: server.fetch, maxBufferBytes: 8 });
    const error = await drive(fetch(URL_, { method: 'POST', body: stream })).catch((e: unknown) => e);
    expect(isIdempotencyError(error, 'request_too_large')).toBe(true);
    expect(String(error)).toMatch(/\[fetch\].*maxBufferBytes \(8\)/);
    expect(cancel).toHaveBeenCalled();
    expect(server.seen).toHaveLength(0);
  });

  it('buffers a stream of exactly maxBufferBytes', async () => {
    const { stream } = streamOf('1234', '5678');
    const { seen } = await sendTwice(URL_, { method: 'POST', body: stream }, { maxBufferBytes: 8 });
    expect(text(seen[1]?.body)).toBe('12345678');
  });

  it('sends a stream once, keyed but never retried, when bufferStreams is false', async () => {
    const { stream } = streamOf('once');
    const lost = networkError();
    const server = scriptedFetch(lost, answer(201));
    const fetch = createIdempotentFetch({ fetch: server.fetch, bufferStreams: false });
    await expect(drive(fetch(URL_, { method: 'POST', body: stream }))).rejects.toBe(lost);
    expect(server.seen).toHaveLength(1);
    expect(text(server.seen[0]?.body)).toBe('once');
    expect(server.seen[0]?.key).not.toBeNull();
  });
});

describe('while a stream body is buffered', () => {
  /** A stream that sends one chunk and then neither ends nor fails: only a cancel stops it. */
  function openStream() {
    const cancel = vi.fn();
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => controller.enqueue(new TextEncoder().encode('partial')),
      cancel,
    });
    return { stream, cancel };
  }

  it('rejects at once with the signal reason when the caller aborts, and cancels the stream', async () => {
    const { stream, cancel } = openStream();
    const server = scriptedFetch(answer(201));
    const fetch = createIdempotentFetch({ fetch: server.fetch });
    const controller = new AbortController();
    const pending = fetch(URL_, { method: 'POST', body: stream, signal: controller.signal }).catch(
      (e: unknown) => e,
    );
    await tick(100);
    const reason = new Error('user left');
    controller.abort(reason);
    expect(await pending).toBe(reason);
    expect(cancel).toHaveBeenCalled();
    expect(server.seen).toHaveLength(0);
  });

  it('rejects with a TimeoutError at the deadline, and cancels the stream', async () => {
    const { stream, cancel } = openStream();
    const server = scriptedFetch(answer(201));
    const fetch = createIdempotentFetch({ fetch: server.fetch, deadlineMs: 1000 });
    const start = Date.now();
    const error = await drive(fetch(URL_, { method: 'POST', body: stream })).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'TimeoutError', message: expect.stringMatching(/deadlineMs/) });
    expect(Date.now() - start).toBe(1000);
    expect(cancel).toHaveBeenCalled();
    expect(server.seen).toHaveLength(0);
  });

  it('rejects on abort while an async generator body is stalled', async () => {
    async function* stalled() {
      yield 'partial';
      await new Promise(() => {});
    }
    const server = scriptedFetch(answer(201));
    const fetch = createIdempotentFetch({ fetch: server.fetch });
    const controller = new AbortController();
    const body = stalled() as unknown as RequestBody;
    const pending = fetch(URL_, { method: 'POST', body, signal: controller.signal }).catch((e: unknown) => e);
    await tick(100);
    const reason = new Error('user left');
    controller.abort(reason);
    expect(await pending).toBe(reason);
    expect(server.seen).toHaveLength(0);
  });

  it('destroys a stalled Node stream body on abort, so that its file or socket is freed', async () => {
    const stream = new Readable({ read() {} });
    stream.push('partial');
    const server = scriptedFetch(answer(201));
    const fetch = createIdempotentFetch({ fetch: server.fetch });
    const controller = new AbortController();
    const body = stream as unknown as RequestBody;
    const pending = fetch(URL_, { method: 'POST', body, signal: controller.signal }).catch((e: unknown) => e);
    await tick(100);
    const reason = new Error('user left');
    controller.abort(reason);
    expect(await pending).toBe(reason);
    await flush();
    expect(stream.destroyed).toBe(true);
  });
});

describe('a Request as input', () => {
  it('sends its body, headers and key again on every attempt', async () => {
    const request = new Request(URL_, {
      method: 'POST',
      body: '{"sku":"a"}',
      headers: { 'content-type': 'application/json', 'x-trace': 't1' },
    });
    const { response, seen } = await sendTwice(request);
    expect(response.status).toBe(201);
    expect(seen.map((s) => [s.method, s.url, text(s.body), s.headers.get('x-trace')])).toEqual([
      ['POST', URL_, '{"sku":"a"}', 't1'],
      ['POST', URL_, '{"sku":"a"}', 't1'],
    ]);
    expect(seen[0]?.key).not.toBeNull();
    expect(seen[1]?.key).toBe(seen[0]?.key);
  });

  it('lets init override the Request, like fetch', async () => {
    const request = new Request(URL_, {
      method: 'POST',
      body: 'old',
      headers: { 'idempotency-key': 'mine' },
    });
    const { seen } = await sendTwice(request, { body: 'new' });
    expect(seen.map((s) => [text(s.body), s.key])).toEqual([
      ['new', 'mine'],
      ['new', 'mine'],
    ]);
  });

  it('retries a bodiless GET Request without a key', async () => {
    const { seen } = await sendTwice(new Request(`${URL_}?page=2`));
    expect(seen.map((s) => [s.method, s.url, s.key])).toEqual([
      ['GET', `${URL_}?page=2`, null],
      ['GET', `${URL_}?page=2`, null],
    ]);
  });

  it('sends an unbuffered Request stream once', async () => {
    const { stream } = streamOf('streamed');
    const request = new Request(URL_, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    const server = scriptedFetch(answer(503), answer(201));
    const fetch = createIdempotentFetch({ fetch: server.fetch, bufferStreams: false });
    expect((await drive(fetch(request))).status).toBe(503);
    expect(server.seen.map((s) => text(s.body))).toEqual(['streamed']);
  });
});
