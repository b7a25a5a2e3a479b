import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { storageKey } from '@idem/core';
import { slowClaiming, slowCompleting } from '@idem/http-test-suite';
import { memoryStore } from '@idem/memory';
import Fastify, { type FastifyInstance, type InjectOptions, type onSendHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { afterEach, describe, expect, it } from 'vitest';
import { type FastifyIdempotencyOptions, idempotency } from './index.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

let counter = 0;
const newKey = () => `key-${Date.now()}-${++counter}`;

/**
 * A Fastify app with the plugin registered; `routes` adds routes after it, counting runs with `count`;
 * `before` sets the app up before the plugin is registered.
 */
async function build(
  options: Partial<FastifyIdempotencyOptions>,
  routes: (app: FastifyInstance, count: (name: string) => number) => unknown,
  before?: (app: FastifyInstance) => unknown,
) {
  const app = Fastify();
  apps.push(app);
  await before?.(app);
  const runs = new Map<string, number>();
  const count = (name: string) => {
    const n = (runs.get(name) ?? 0) + 1;
    runs.set(name, n);
    return n;
  };
  await app.register(idempotency, { store: memoryStore(), ...options });
  await routes(app, count);
  await app.ready();
  return { app, runs, count };
}

function post(app: FastifyInstance, url: string, key?: string, extra: Partial<InjectOptions> = {}) {
  const headers = { ...(key === undefined ? {} : { 'idempotency-key': key }), ...(extra.headers ?? {}) };
  return app.inject({ method: 'POST', url, payload: { a: 1 }, ...extra, headers });
}

describe('per-route config', () => {
  it('leaves a route with `idempotency: false` alone: no key needed, runs every time', async () => {
    let runs = 0;
    const { app } = await build({}, (app) => {
      app.post('/free', { config: { idempotency: false } }, async () => ({ run: ++runs }));
    });
    expect((await post(app, '/free')).json()).toEqual({ run: 1 });
    const key = newKey();
    await post(app, '/free', key);
    const again = await post(app, '/free', key);
    expect(again.headers['idempotent-replayed']).toBeUndefined();
    expect(runs).toBe(3);
  });

  it('overrides the plugin options per route (required, methods)', async () => {
    let runs = 0;
    const { app } = await build({}, (app) => {
      app.post('/optional', { config: { idempotency: { required: false } } }, async () => ({ run: ++runs }));
      app.post('/strict', async () => ({ run: ++runs }));
      app.put('/put', { config: { idempotency: { methods: ['PUT'] } } }, async () => ({ run: ++runs }));
      app.put('/put-default', async () => ({ run: ++runs }));
    });
    expect((await post(app, '/optional')).statusCode).toBe(200);
    expect((await post(app, '/strict')).statusCode).toBe(400);
    expect((await app.inject({ method: 'PUT', url: '/put' })).statusCode).toBe(400);
    expect((await app.inject({ method: 'PUT', url: '/put-default' })).statusCode).toBe(200);

    const key = newKey();
    const first = await app.inject({ method: 'PUT', url: '/put', headers: { 'idempotency-key': key } });
    const replay = await app.inject({ method: 'PUT', url: '/put', headers: { 'idempotency-key': key } });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toBe(first.body);
  });

  it('with global: false, covers only the routes that opt in', async () => {
    const { app } = await build({ global: false }, (app) => {
      app.post('/plain', async () => ({ ok: true }));
      app.post('/opted', { config: { idempotency: true } }, async () => ({ ok: true }));
    });
    expect((await post(app, '/plain')).statusCode).toBe(200);
    expect((await post(app, '/opted')).json()).toMatchObject({ code: 'key_missing' });
  });
});

describe('responses', () => {
  it('replays reply.send(Buffer) byte-exact with its content type', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    const { app, count } = await build({}, (app) => {
      app.post('/bytes', (_request, reply) => {
        count('bytes');
        reply.header('content-type', 'image/png').send(bytes);
      });
    });
    const key = newKey();
    const first = await post(app, '/bytes', key);
    const replay = await post(app, '/bytes', key);
    expect(Buffer.compare(first.rawPayload, bytes)).toBe(0);
    expect(Buffer.compare(replay.rawPayload, bytes)).toBe(0);
    expect(replay.headers['content-type']).toBe('image/png');
    expect(replay.headers['idempotent-replayed']).toBe('true');
  });

  it('replays async return values, reply.send in sync handlers and in async handlers alike', async () => {
    const { app, runs, count } = await build({}, (app) => {
      app.post('/returned', async (_request, reply) => {
        reply.code(201);
        return { n: count('returned') };
      });
      app.post('/sent-sync', (_request, reply) => {
        reply.code(202).send({ n: count('sent-sync') });
      });
      app.post('/sent-async', async (_request, reply) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        reply
          .code(200)
          .type('text/plain')
          .send(`n=${count('sent-async')}`);
        return reply;
      });
    });
    for (const [url, status] of [
      ['/returned', 201],
      ['/sent-sync', 202],
      ['/sent-async', 200],
    ] as const) {
      const key = newKey();
      const first = await post(app, url, key);
      const replay = await post(app, url, key);
      expect(first.statusCode).toBe(status);
      expect(replay.statusCode).toBe(status);
      expect(replay.body).toBe(first.body);
      expect(replay.headers['content-type']).toBe(first.headers['content-type']);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(runs.get(url.slice(1))).toBe(1);
    }
  });

  it('sends once when an async handler sends without returning reply, or returns another value', async () => {
    // Fastify sends again what an async handler resolves with while the reply does not look sent, and
    // it does not while idem holds it: over a real socket, the second answer ended the process.
    const store = slowCompleting(memoryStore(), 50);
    const { app, runs, count } = await build({ store }, (app) => {
      app.post('/no-return', async (_request, reply) => {
        reply.code(201).send({ n: count('no-return') });
      });
      app.post('/returns-another', async (_request, reply) => {
        reply.code(201).send({ sent: count('returns-another') });
        return { returned: true };
      });
    });
    const origin = await app.listen({ port: 0, host: '127.0.0.1' });
    for (const [path, expected] of [
      ['/no-return', { n: 1 }],
      ['/returns-another', { sent: 1 }],
    ] as const) {
      const key = newKey();
      const send = () =>
        fetch(origin + path, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          body: '{}',
        });
      const first = await send();
      expect(first.status).toBe(201);
      expect(await first.json()).toEqual(expected);
      const replay = await send();
      expect(replay.status).toBe(201);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.json()).toEqual(expected);
    }
    expect(Object.fromEntries(runs)).toEqual({ 'no-return': 1, 'returns-another': 1 });
  });

  it("lets an answer sent while idem decides go out, and gives the claim back without running the route (decideIn: 'preParsing')", async () => {
    const decideIn = 'preParsing';
    // Fastify's handlerTimeout answers 503 while the store is still deciding (a slow claim). Its clock
    // starts before preParsing, so only `decideIn: 'preParsing'` decides under it.
    const inner = memoryStore();
    const store = slowClaiming(inner, 200);
    const app = Fastify({ handlerTimeout: 50 });
    apps.push(app);
    let runs = 0;
    await app.register(idempotency, { store, decideIn });
    app.post('/orders', async () => ({ run: ++runs }));
    const origin = await app.listen({ port: 0, host: '127.0.0.1' });
    const key = newKey();
    const first = await fetch(`${origin}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: '{}',
      signal: AbortSignal.timeout(5_000),
    });
    expect(first.status).toBe(503);
    expect(runs).toBe(0);
    // The claim was given back: the key is free for a retry at once, not held for a lease.
    expect((await inner.get(await storageKey(key)))?.state).toBe('failed');
  });

  it('keeps the status and headers of the response it holds when the handler throws after sending', async () => {
    const store = slowCompleting(memoryStore(), 50);
    const { app, runs, count } = await build({ store }, (app) => {
      app.post('/sent-then-threw', async (_request, reply) => {
        reply
          .code(201)
          .header('x-order', 'o-1')
          .send({ n: count('sent-then-threw') });
        throw new Error('after the send');
      });
    });
    const origin = await app.listen({ port: 0, host: '127.0.0.1' });
    const key = newKey();
    const send = () =>
      fetch(`${origin}/sent-then-threw`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: '{}',
      });
    // As plain Fastify answers: the response sent, not the error thrown after it.
    const first = await send();
    expect(first.status).toBe(201);
    expect(first.headers.get('x-order')).toBe('o-1');
    expect(first.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await first.json()).toEqual({ n: 1 });
    const replay = await send();
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.json()).toEqual({ n: 1 });
    expect(runs.get('sent-then-threw')).toBe(1);
  });

  it('passes a stream payload through untouched and answers 410 (streaming) to a retry', async () => {
    const { app, count } = await build({}, (app) => {
      app.post('/export', (_request, reply) => {
        count('export');
        reply.type('text/csv').send(Readable.from(['id,total\n', '1,10\n', '2,20\n']));
      });
    });
    const key = newKey();
    const first = await post(app, '/export', key);
    expect(first.statusCode).toBe(200);
    expect(first.body).toBe('id,total\n1,10\n2,20\n');
    const retry = await post(app, '/export', key);
    expect(retry.statusCode).toBe(410);
    expect(retry.json()).toMatchObject({ code: 'response_not_stored', reason: 'streaming' });
  });

  it('records a hijacked reply as run (its body unknown): a retry gets 410, the route never runs twice', async () => {
    const { app, runs, count } = await build({}, (app) => {
      app.post('/raw', (_request, reply) => {
        count('raw');
        reply.hijack();
        reply.raw.writeHead(200, { 'content-type': 'text/plain' });
        reply.raw.end('raw');
      });
    });
    const key = newKey();
    expect((await post(app, '/raw', key)).body).toBe('raw');
    const retry = await post(app, '/raw', key);
    expect(retry.statusCode).toBe(410);
    expect(runs.get('raw')).toBe(1);
  });

  it('holds the response until the record is completed, so an immediate retry is a replay', async () => {
    // A slow `complete`: without the wait, the retry would find the record in flight (409).
    const store = slowCompleting(memoryStore(), 150);
    const { app, runs, count } = await build({ store }, (app) => {
      app.post('/orders', async () => ({ n: count('orders') }));
    });
    const key = newKey();
    const first = await post(app, '/orders', key);
    const retry = await post(app, '/orders', key);
    expect(retry.statusCode, retry.body).toBe(200);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.body).toBe(first.body);
    expect(runs.get('orders')).toBe(1);
  });
});

describe('errors and hooks', () => {
  it('releases the key when the route throws, even a 4xx error: a retry runs again', async () => {
    const { app, runs, count } = await build({}, (app) => {
      app.post('/reject', async () => {
        count('reject');
        throw Object.assign(new Error('not yet'), { statusCode: 409 });
      });
    });
    const key = newKey();
    expect((await post(app, '/reject', key)).statusCode).toBe(409);
    const retry = await post(app, '/reject', key);
    expect(retry.statusCode).toBe(409);
    expect(retry.json()).toMatchObject({ message: 'not yet' });
    expect(runs.get('reject')).toBe(2);
  });

  it('claims nothing for a request Fastify refuses before the handler (schema validation)', async () => {
    const { app, count } = await build({}, (app) => {
      app.post(
        '/orders',
        {
          schema: { body: { type: 'object', required: ['item'], properties: { item: { type: 'string' } } } },
        },
        async (request) => ({ n: count('orders'), body: request.body }),
      );
    });
    const key = newKey();
    expect((await post(app, '/orders', key, { payload: { nope: 1 } })).statusCode).toBe(400);
    // Another body with the same key is not a mismatch: the invalid request never claimed the key.
    const valid = await post(app, '/orders', key, { payload: { item: 'book' } });
    expect(valid.statusCode).toBe(200);
    expect(valid.json()).toEqual({ n: 1, body: { item: 'book' } });
  });

  it("runs after the route's own preHandler hooks, whose replies claim nothing; scope sees what they set", async () => {
    const { app, runs, count } = await build(
      { scope: (request) => request.headers['x-tenant'] as string },
      (app) => {
        app.post(
          '/orders',
          {
            preHandler: async (request, reply) => {
              if (!request.headers['x-tenant']) return reply.code(401).send({ error: 'who are you' });
            },
          },
          async (request) => ({ n: count('orders'), tenant: request.headers['x-tenant'] }),
        );
      },
    );
    const key = newKey();
    expect((await post(app, '/orders', key)).statusCode).toBe(401);
    const a = await post(app, '/orders', key, { headers: { 'x-tenant': 'a' } });
    const b = await post(app, '/orders', key, { headers: { 'x-tenant': 'b' } });
    expect(a.json()).toEqual({ n: 1, tenant: 'a' });
    expect(b.json()).toEqual({ n: 2, tenant: 'b' });
    expect((await post(app, '/orders', key, { headers: { 'x-tenant': 'a' } })).body).toBe(a.body);
    expect(runs.get('orders')).toBe(2);
  });

  it('sends replays through the other onSend hooks without running the route again', async () => {
    const { app, runs, count } = await build({}, (app) => {
      // Slow on purpose: the response is not finished when idem's preHandler has replied.
      app.addHook('onSend', async (_request, reply, payload) => {
        await new Promise((resolve) => setTimeout(resolve, 10));
        reply.header('x-served-by', 'node-1');
        return payload;
      });
      app.post('/orders', async () => ({ n: count('orders') }));
    });
    const key = newKey();
    await post(app, '/orders', key);
    const replay = await post(app, '/orders', key);
    expect(replay.headers['x-served-by']).toBe('node-1');
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(runs.get('orders')).toBe(1);
  });

  it('fingerprints the raw body even when a parser hands the handler the stream unread', async () => {
    const { app, count } = await build({}, (app) => {
      app.addContentTypeParser('text/csv', (_request, payload, done) => done(null, payload));
      app.post('/import', async (request) => {
        let text = '';
        for await (const chunk of request.body as Readable) text += chunk;
        return { n: count('import'), text };
      });
    });
    const key = newKey();
    const csv = { headers: { 'content-type': 'text/csv' } };
    const first = await post(app, '/import', key, { ...csv, payload: 'a,b\n1,2\n' });
    expect(first.json()).toEqual({ n: 1, text: 'a,b\n1,2\n' });
    expect((await post(app, '/import', key, { ...csv, payload: 'a,b\n1,2\n' })).body).toBe(first.body);
    expect((await post(app, '/import', key, { ...csv, payload: 'a,b\n9,9\n' })).statusCode).toBe(422);
  });

  it('gives handlers request.idempotency, and null where idem does not cover the request', async () => {
    const { app } = await build({}, (app) => {
      app.post('/context', async (request) => ({ key: request.idempotency?.key ?? null }));
      app.get('/context', async (request) => ({ context: request.idempotency }));
    });
    expect((await post(app, '/context', '"abc"')).json()).toEqual({ key: 'abc' });
    expect((await app.inject({ method: 'GET', url: '/context' })).json()).toEqual({ context: null });
  });

  it('fails to register without a store', async () => {
    const app = Fastify();
    app.register(idempotency, {} as FastifyIdempotencyOptions);
    await expect(app.ready()).rejects.toThrow(/store is required/);
  });
});

describe('onSend hooks', () => {
  /** The app listening on a free port, and a real HTTP POST to it: status, headers and the body's bytes. */
  async function listening(app: FastifyInstance) {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    return (path: string, key: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
        const sent = httpRequest(
          {
            port,
            host: '127.0.0.1',
            method: 'POST',
            path,
            headers: { 'idempotency-key': key, 'content-type': 'application/json', ...headers },
          },
          (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () =>
              resolve({
                status: response.statusCode!,
                headers: response.headers,
                body: Buffer.concat(chunks),
              }),
            );
          },
        );
        sent.on('error', reject);
        sent.end('{"a":1}');
      });
  }

  /** Where an app puts an onSend hook, relative to the plugin; `routes` declares `/orders` with `handler`. */
  interface Placement {
    before?: (app: FastifyInstance) => unknown;
    routes: (app: FastifyInstance, handler: () => Promise<unknown>) => unknown;
  }

  function placements(hook: onSendHookHandler<unknown>): Record<string, Placement> {
    return {
      'app-level, registered before the plugin': {
        before: (app) => app.addHook('onSend', hook),
        routes: (app, handler) => app.post('/orders', handler),
      },
      'app-level, registered after the plugin': {
        routes: (app, handler) => app.addHook('onSend', hook).post('/orders', handler),
      },
      'in an encapsulated plugin': {
        routes: (app, handler) =>
          app.register(async (child) => {
            child.addHook('onSend', hook).post('/orders', handler);
          }),
      },
      'route-level': { routes: (app, handler) => app.post('/orders', { onSend: hook }, handler) },
      // As `@fastify/compress` does (it appends): a plugin's onRoute hook adds the hook to covered routes.
      'route-level, appended by a plugin registered before idem': {
        before: (app) =>
          app.register(
            fp(async (instance) => {
              instance.addHook('onRoute', appending(hook));
            }),
          ),
        routes: (app, handler) => app.post('/orders', handler),
      },
      'route-level, put first by a plugin registered after idem': {
        routes: async (app, handler) => {
          await app.register(
            fp(async (instance) => {
              instance.addHook('onRoute', (route) => {
                route.onSend = [hook, ...[route.onSend ?? []].flat()];
              });
            }),
          );
          app.post('/orders', handler);
        },
      },
    };
  }

  function appending(hook: onSendHookHandler<unknown>) {
    return (route: { onSend?: onSendHookHandler<unknown> | onSendHookHandler<unknown>[] }) => {
      route.onSend = [...[route.onSend ?? []].flat(), hook];
    };
  }

  /** Wraps the JSON payload in `{ data }`, as an app might do to every response. */
  const envelope: onSendHookHandler<unknown> = (_request, _reply, payload, done) =>
    done(null, JSON.stringify({ data: JSON.parse(String(payload)) }));

  /** Gzips the payload when the request accepts it, as `@fastify/compress` does (not a dependency here). */
  const gzip: onSendHookHandler<unknown> = (request, reply, payload, done) => {
    reply.header('vary', 'accept-encoding');
    if (!request.headers['accept-encoding']?.includes('gzip')) return done(null, payload);
    reply.header('content-encoding', 'gzip');
    done(null, gzipSync(payload as string | Buffer));
  };

  const where = (hook: onSendHookHandler<unknown>) =>
    Object.entries(placements(hook)).flatMap(([name, placement]) =>
      (['preHandler', 'preParsing'] as const).map((decideIn) => ({ name, decideIn, placement })),
    );

  it.each(where(envelope))(
    'sends a replay through a payload-rewriting hook once ($name, decideIn: $decideIn)',
    async ({ decideIn, placement }) => {
      let runs = 0;
      const { app } = await build(
        { decideIn },
        (app) => placement.routes(app, async () => ({ run: ++runs })),
        placement.before,
      );
      const call = await listening(app);
      const key = newKey();
      const first = await call('/orders', key);
      const replay = await call('/orders', key);
      expect(first.body.toString()).toBe('{"data":{"run":1}}');
      expect(replay.status).toBe(200);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.body.toString()).toBe('{"data":{"run":1}}');
      expect(runs).toBe(1);
    },
  );

  it.each(where(gzip))(
    'stores the payload before compression, so each retry is encoded as it asks ($name, decideIn: $decideIn)',
    async ({ decideIn, placement }) => {
      let runs = 0;
      const { app } = await build(
        { decideIn },
        (app) => placement.routes(app, async () => ({ run: ++runs, note: 'compressible '.repeat(20) })),
        placement.before,
      );
      const call = await listening(app);
      const key = newKey();
      const first = await call('/orders', key, { 'accept-encoding': 'gzip' });
      expect(first.headers['content-encoding']).toBe('gzip');
      const text = gunzipSync(first.body).toString();
      expect(JSON.parse(text)).toMatchObject({ run: 1 });

      const plain = await call('/orders', key, { 'accept-encoding': 'identity' });
      expect(plain.headers['idempotent-replayed']).toBe('true');
      expect(plain.headers['content-encoding']).toBeUndefined();
      expect(plain.headers.vary).toBe('accept-encoding');
      expect(plain.body.toString()).toBe(text);

      const gzipped = await call('/orders', key, { 'accept-encoding': 'gzip' });
      expect(gzipped.headers['idempotent-replayed']).toBe('true');
      expect(gzipped.headers['content-encoding']).toBe('gzip');
      expect(gunzipSync(gzipped.body).toString()).toBe(text);
      expect(runs).toBe(1);
    },
  );

  it('gives a replay the headers of onSend hooks afresh, and runs onResponse hooks for it', async () => {
    let sent = 0;
    const responded: string[] = [];
    const { app } = await build(
      {},
      (app) => {
        app.addHook('onResponse', (_request, reply, done) => {
          responded.push(String(reply.getHeader('idempotent-replayed') ?? 'false'));
          done();
        });
        app.post('/orders', async (_request, reply) => reply.header('x-order', 'ord_1').send({ ok: true }));
      },
      (app) => {
        app.addHook('onSend', (_request, reply, payload, done) => {
          reply.header('x-response-number', String(++sent));
          done(null, payload);
        });
      },
    );
    const call = await listening(app);
    const key = newKey();
    const first = await call('/orders', key);
    const replay = await call('/orders', key);
    expect(first.headers['x-response-number']).toBe('1');
    expect(replay.headers['x-response-number']).toBe('2');
    expect(replay.headers['x-order']).toBe('ord_1');
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(responded).toEqual(['false', 'true']);
  });
});

describe("decideIn: 'preParsing'", () => {
  /** A route whose JSON parser, preValidation and preHandler hooks and handler count their runs. */
  function countedRoute(app: FastifyInstance, count: (name: string) => number, url = '/orders', config = {}) {
    app.post(
      url,
      {
        config,
        preValidation: (_request, _reply, done) => {
          count(`${url} preValidation`);
          done();
        },
        preHandler: (_request, _reply, done) => {
          count(`${url} preHandler`);
          done();
        },
      },
      async (request, reply) => reply.code(201).send({ n: count(`${url} handler`), body: request.body }),
    );
  }

  it('answers a replay before the body is parsed: no parser, preValidation, preHandler or handler runs', async () => {
    const { app, runs } = await build({ decideIn: 'preParsing' }, (app, count) => {
      app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
        count('parser');
        done(null, JSON.parse(body as string));
      });
      countedRoute(app, count);
    });
    const key = newKey();
    const first = await post(app, '/orders', key);
    expect(first.statusCode).toBe(201);
    expect(first.json()).toEqual({ n: 1, body: { a: 1 } });
    const replay = await post(app, '/orders', key);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toBe(first.body);
    expect(Object.fromEntries(runs)).toEqual({
      parser: 1,
      '/orders preValidation': 1,
      '/orders preHandler': 1,
      '/orders handler': 1,
    });
    // Problems too: a mismatch and a missing key are answered before parsing.
    expect((await post(app, '/orders', key, { payload: { a: 2 } })).statusCode).toBe(422);
    expect((await post(app, '/orders')).statusCode).toBe(400);
    expect(runs.get('parser')).toBe(1);
  });

  it('gives scope what onRequest hooks set', async () => {
    const { app, runs } = await build(
      { decideIn: 'preParsing', scope: (request) => (request as unknown as { tenant: string }).tenant },
      (app, count) => {
        app.decorateRequest('tenant', '');
        app.addHook('onRequest', (request, _reply, done) => {
          (request as unknown as { tenant: string }).tenant = String(request.headers['x-tenant']);
          done();
        });
        countedRoute(app, count);
      },
    );
    const key = newKey();
    const a = await post(app, '/orders', key, { headers: { 'x-tenant': 'a' } });
    const b = await post(app, '/orders', key, { headers: { 'x-tenant': 'b' } });
    expect([a.json().n, b.json().n]).toEqual([1, 2]);
    expect((await post(app, '/orders', key, { headers: { 'x-tenant': 'a' } })).body).toBe(a.body);
    expect(runs.get('/orders handler')).toBe(2);
  });

  it('releases the key when Fastify refuses the request after the claim (a body that does not parse)', async () => {
    const { app, runs } = await build({ decideIn: 'preParsing' }, (app, count) => countedRoute(app, count));
    const key = newKey();
    const broken = { payload: '{"a":', headers: { 'content-type': 'application/json' } };
    expect((await post(app, '/orders', key, broken)).statusCode).toBe(400);
    // Released, not left in flight (409) and not stored: the same request is refused again by Fastify.
    expect((await post(app, '/orders', key, broken)).statusCode).toBe(400);
    // Unlike in preHandler, the key was claimed for that body: another body is a mismatch.
    expect((await post(app, '/orders', key)).statusCode).toBe(422);
    expect(runs.get('/orders handler')).toBeUndefined();
  });

  it('is a per-route setting too', async () => {
    const { app, runs } = await build({}, (app, count) => {
      countedRoute(app, count, '/early', { idempotency: { decideIn: 'preParsing' } });
      countedRoute(app, count, '/late');
    });
    for (const url of ['/early', '/late']) {
      const key = newKey();
      await post(app, url, key);
      expect((await post(app, url, key)).headers['idempotent-replayed']).toBe('true');
    }
    expect(runs.get('/early preHandler')).toBe(1);
    expect(runs.get('/late preHandler')).toBe(2); // idem decides after the route's preHandler hooks
    expect(runs.get('/early handler')).toBe(1);
    expect(runs.get('/late handler')).toBe(1);
  });

  it('drains a body over maxRequestBytes after its 413, so a kept-alive connection carries the next request', async () => {
    const { app } = await build({ decideIn: 'preParsing', maxRequestBytes: 1024 }, (app) => {
      app.post('/orders', async () => ({ ok: true }));
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as { port: number };
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const request = (key: string, body: Uint8Array, chunked: boolean) =>
      new Promise<{ status: number; body: string; reused: boolean }>((resolve, reject) => {
        const sent = httpRequest(
          {
            agent,
            port,
            host: '127.0.0.1',
            method: 'POST',
            path: '/orders',
            headers: {
              'idempotency-key': key,
              'content-type': 'application/json',
              ...(chunked ? {} : { 'content-length': body.length }),
            },
          },
          (response) => {
            let text = '';
            response.setEncoding('utf8');
            response.on('data', (chunk: string) => {
              text += chunk;
            });
            response.on('end', () =>
              resolve({ status: response.statusCode!, body: text, reused: sent.reusedSocket }),
            );
          },
        );
        sent.on('error', reject);
        // A chunked body well over the limit, in several writes.
        if (chunked)
          for (let i = 0; i < body.length; i += 16 * 1024) sent.write(body.subarray(i, i + 16 * 1024));
        sent.end(chunked ? undefined : body);
      });
    try {
      const big = new Uint8Array(256 * 1024).fill(0x20);
      const tooLarge = await request(newKey(), big, true);
      expect(tooLarge.status).toBe(413);
      expect(JSON.parse(tooLarge.body)).toMatchObject({ code: 'request_too_large' });
      const next = await request(newKey(), new TextEncoder().encode('{"a":1}'), false);
      expect(next).toEqual({ status: 200, body: '{"ok":true}', reused: true });
    } finally {
      agent.destroy();
    }
  });
});
