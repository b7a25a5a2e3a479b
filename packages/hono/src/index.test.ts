import { memoryStore } from '@idem/memory';
import { Hono } from 'hono';
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

const post = (key: string, body: BodyInit, type = 'application/json') => ({
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
