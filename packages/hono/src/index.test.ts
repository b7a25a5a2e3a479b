import { memoryStore } from '@idem/memory';
import { Hono } from 'hono';
import { stream, streamText } from 'hono/streaming';
import { validator } from 'hono/validator';
import { describe, expect, it } from 'vitest';
import { type IdempotencyOptions, type IdempotencyVariables, idempotency } from './index.js';

// Hono-specific behaviour, in process (app.request); the shared suite covers HTTP semantics over real HTTP.
function appWith(options: Partial<IdempotencyOptions> = {}) {
  let runs = 0;
  const app = new Hono<{ Variables: IdempotencyVariables }>();
  app.use(async (c, next) => {
    c.header('X-Request-Id', 'outer');
    await next();
  });
  return { app, runs: () => runs, count: () => ++runs, options: { store: memoryStore(), ...options } };
}

/** Read a body, noting when each chunk arrived. */
async function readTimed(body: ReadableStream<Uint8Array>) {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  const chunks: Array<{ at: number; text: string }> = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push({ at: Date.now(), text: decoder.decode(value) });
  }
}

const post = (key: string, body: NonNullable<RequestInit['body']>, type = 'application/json') => ({
  method: 'POST',
  headers: { 'idempotency-key': key, 'content-type': type },
  body,
});

describe('@idem/hono', () => {
  it('leaves the body to c.req.json(), c.req.text(), c.req.parseBody() and c.req.arrayBuffer()', async () => {
    const { app, options } = appWith();
    app.use(idempotency(options));
    app.post('/json', async (c) => c.json({ json: await c.req.json(), text: await c.req.text() }));
    app.post('/form', async (c) => c.json(await c.req.parseBody()));
    app.post('/bytes', async (c) => c.json({ length: (await c.req.arrayBuffer()).byteLength }));

    const json = await app.request('/json', post('k1', '{"a":1}'));
    expect(await json.json()).toEqual({ json: { a: 1 }, text: '{"a":1}' });
    const form = await app.request('/form', post('k2', 'a=1&b=two', 'application/x-www-form-urlencoded'));
    expect(await form.json()).toEqual({ a: '1', b: 'two' });
    const bytes = await app.request('/bytes', post('k3', new Uint8Array(300), 'application/octet-stream'));
    expect(await bytes.json()).toEqual({ length: 300 });
  });

  it('leaves forms to c.req.parseBody(), c.req.formData() and validators, even where Hono cannot derive them', async () => {
    const { app, options } = appWith();
    app.use(idempotency(options));
    const seeded: string[][] = [];
    app.post('/parse', async (c) => {
      // Hono before 4.13.8 derives any form it does not hold from the first one it holds, without the
      // Content-Type (a 500): the form must be held already.
      seeded.push(Object.keys(c.req.bodyCache));
      return c.json(await c.req.parseBody());
    });
    app.post('/form-data', async (c) => c.json(Object.fromEntries(await c.req.formData())));
    app.post(
      '/validated',
      validator('form', (value) => value),
      (c) => c.json(c.req.valid('form')),
    );

    // A browser's boundary has capitals, which must reach the parser as sent.
    const boundary = '----WebKitFormBoundaryAbC7xYz';
    const type = `multipart/form-data; boundary=${boundary}`;
    const part = (name: string, value: string) =>
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
    const body = `${part('item', 'book')}${part('note', 'caf\u00e9')}--${boundary}--\r\n`;
    for (const path of ['/parse', '/form-data', '/validated']) {
      const response = await app.request(path, post(`m${path}`, body, type));
      expect(response.status, path).toBe(200);
      expect(await response.json()).toEqual({ item: 'book', note: 'caf\u00e9' });
      const urlencoded = await app.request(
        path,
        post(`u${path}`, 'a=1&b=two', 'application/x-www-form-urlencoded'),
      );
      expect(await urlencoded.json()).toEqual({ a: '1', b: 'two' });
    }
    expect(seeded).toEqual([
      ['arrayBuffer', 'formData'],
      ['arrayBuffer', 'formData'],
    ]);
    // A malformed form is left to Hono, as without idem (the validator's 400).
    const malformed = await app.request(
      '/validated',
      post('bad', 'not a form', 'multipart/form-data; boundary=x'),
    );
    expect(malformed.status).toBe(400);
  });

  it('streams a response token by token (streamText), and stores it once it ended', async () => {
    const { app, options, count, runs } = appWith();
    app.use(idempotency(options));
    const tokens = ['one ', 'two ', 'three ', 'four ', 'five'];
    app.post('/tokens', (c) => {
      count();
      return streamText(c, async (out) => {
        for (const [i, token] of tokens.entries()) {
          if (i > 0) await out.sleep(150);
          await out.write(token);
        }
      });
    });

    const started = Date.now();
    const response = await app.request('/tokens', post('t1', '{}'));
    const arrivals = await readTimed(response.body!);
    expect(arrivals.map((chunk) => chunk.text).join('')).toBe(tokens.join(''));
    // The tokens are written 150 ms apart: the first arrived alone, well before the last.
    expect(arrivals[0]!.text).toBe('one ');
    expect(arrivals[0]!.at - started).toBeLessThan(400);
    expect(arrivals.at(-1)!.at - arrivals[0]!.at).toBeGreaterThanOrEqual(300);
    const replay = await app.request('/tokens', post('t1', '{}'));
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.text()).toBe(tokens.join(''));
    expect(runs()).toBe(1);
  });

  it('completes without a body when the client cancels mid-stream: a retry gets 410, never a second run', async () => {
    const { app, options, count, runs } = appWith();
    app.use(idempotency(options));
    let aborted = false;
    app.post('/endless', (c) => {
      count();
      c.header('Content-Type', 'application/x-ndjson');
      return stream(c, async (out) => {
        out.onAbort(() => {
          aborted = true;
        });
        for (let i = 0; !out.aborted; i++) {
          await out.write(`{"n":${i}}\n`);
          await out.sleep(20);
        }
      });
    });

    const reader = (await app.request('/endless', post('e1', '{}'))).body!.getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(aborted).toBe(true);
    const retry = await app.request('/endless', post('e1', '{}'));
    expect(retry.status).toBe(410);
    expect(await retry.json()).toMatchObject({ code: 'response_not_stored', reason: 'streaming' });
    expect(runs()).toBe(1);
  });

  it('takes the body from Hono’s cache when an earlier middleware already read it', async () => {
    const { app, options, count, runs } = appWith();
    app.use(async (c, next) => {
      await c.req.json();
      await next();
    });
    app.use(idempotency(options));
    app.post('/orders', async (c) => c.json({ run: count(), received: await c.req.json() }, 201));

    const first = await app.request('/orders', post('k', '{"b":2,"a":1}'));
    expect(first.status).toBe(201);
    const replay = await app.request('/orders', post('k', '{"a":1,"b":2}'));
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.json()).toEqual({ run: 1, received: { b: 2, a: 1 } });
    const other = await app.request('/orders', post('k', '{"a":2}'));
    expect(other.status).toBe(422);
    expect(runs()).toBe(1);
  });

  it('keeps headers earlier middleware prepared on replays and problems', async () => {
    const { app, options, count } = appWith({ storedHeaders: { deny: ['x-request-id'] } });
    app.use(idempotency(options));
    app.post('/orders', (c) => c.json({ run: count() }, 201));

    await app.request('/orders', post('k', '{}'));
    const replay = await app.request('/orders', post('k', '{}'));
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('x-request-id')).toBe('outer');
    expect(replay.headers.get('content-type')).toMatch(/^application\/json/);
    const problem = await app.request('/orders', { method: 'POST' });
    expect(problem.status).toBe(400);
    expect(problem.headers.get('content-type')).toBe('application/problem+json');
    expect(problem.headers.get('x-request-id')).toBe('outer');
  });

  it('answers with app.onError when the route throws, and releases the key', async () => {
    const { app, options, count, runs } = appWith();
    app.onError((error, c) => c.json({ error: error.message }, 418));
    app.use(idempotency(options));
    app.post('/orders', () => {
      count();
      throw new Error('nope');
    });

    for (let i = 0; i < 2; i++) {
      const response = await app.request('/orders', post('k', '{}'));
      expect(response.status).toBe(418);
      expect(await response.json()).toEqual({ error: 'nope' });
    }
    expect(runs()).toBe(2);
  });

  it('hands scope the Hono context, so that it sees what the authentication middleware set', async () => {
    let runs = 0;
    const app = new Hono<{ Variables: IdempotencyVariables & { user: string } }>();
    app.use(async (c, next) => {
      c.set('user', c.req.header('x-test-user') ?? 'nobody');
      await next();
    });
    app.use(idempotency({ store: memoryStore(), scope: (c) => c.get('user') }));
    app.post('/orders', (c) => c.json({ run: ++runs, user: c.get('user') }, 201));
    const as = (user: string) => {
      const request = post('shared-key', '{"a":1}');
      return { ...request, headers: { ...request.headers, 'x-test-user': user } };
    };
    expect(await (await app.request('/orders', as('alice'))).json()).toEqual({ run: 1, user: 'alice' });
    const bob = await app.request('/orders', as('bob'));
    expect(bob.headers.get('idempotent-replayed')).toBeNull();
    expect(await bob.json()).toEqual({ run: 2, user: 'bob' });
    const again = await app.request('/orders', as('alice'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual({ run: 1, user: 'alice' });
  });

  it('passes methods it does not cover through without reading the body', async () => {
    const { app, options } = appWith();
    app.use(idempotency(options));
    app.put('/orders', async (c) => c.json({ used: c.req.raw.bodyUsed, body: await c.req.raw.text() }));
    const response = await app.request('/orders', { method: 'PUT', body: 'raw' });
    expect(await response.json()).toEqual({ used: false, body: 'raw' });
  });
});

describe('@idem/hono on @hono/node-server', () => {
  // The body is read from the Node request itself there (no Web request built for it), and put back.
  async function serve(app: Hono<{ Variables: IdempotencyVariables }>) {
    const { createAdaptorServer } = await import('@hono/node-server');
    const server = createAdaptorServer({ fetch: app.fetch });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(resolve)) };
  }

  it('leaves the raw request readable for the route, and fingerprints what it holds', async () => {
    const { app, options, count, runs } = appWith();
    app.use(idempotency(options));
    app.post('/raw', async (c) => c.json({ n: count(), text: await c.req.raw.text() }));
    app.post('/parsed', async (c) => c.json({ n: count(), json: await c.req.json() }));
    const { url, close } = await serve(app);
    try {
      const body = JSON.stringify({ item: 'book', note: 'x'.repeat(100_000) });
      const summary = (text: string) => `${text.length}:${text.slice(0, 20)}…${text.slice(-10)}`;
      const first = await fetch(`${url}/raw`, post('n1', body));
      const got = (await first.json()) as { n: number; text: string };
      expect({ n: got.n, text: summary(got.text) }).toEqual({ n: 1, text: summary(body) });
      const replay = await fetch(`${url}/raw`, post('n1', body));
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect((await fetch(`${url}/raw`, post('n1', body.replace('book', 'pen')))).status).toBe(422);
      const parsed = await fetch(`${url}/parsed`, post('n2', '{"b":2,"a":1}'));
      expect(await parsed.json()).toEqual({ n: 2, json: { a: 1, b: 2 } });
      expect(runs()).toBe(2);
    } finally {
      await close();
    }
  });

  it('answers 413 for a body over maxRequestBytes, and the connection still carries it', async () => {
    const { app, options, count, runs } = appWith({ maxRequestBytes: 1000 });
    app.use(idempotency(options));
    app.post('/raw', async (c) => c.json({ n: count() }));
    const { url, close } = await serve(app);
    try {
      const response = await fetch(`${url}/raw`, post('big', 'x'.repeat(50_000), 'text/plain'));
      expect(response.status).toBe(413);
      expect(await response.json()).toMatchObject({ code: 'request_too_large' });
      expect((await fetch(`${url}/raw`, post('small', 'x'.repeat(10), 'text/plain'))).status).toBe(200);
      expect(runs()).toBe(1);
    } finally {
      await close();
    }
  });
});
