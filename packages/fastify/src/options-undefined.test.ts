import { unset, unsetHttpOptions } from '@idem/http-test-suite';
import { memoryStore } from '@idem/memory';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { type FastifyIdempotencyOptions, idempotency, type RouteIdempotencyConfig } from './index.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.
// `prefix` is the exception of the plugin options: Fastify's own register options declare
// `prefix?: string`, and `register` takes both at once; route settings accept it undefined.

/** Every optional option of the plugin, explicitly `undefined` (but `prefix`, see above). */
const unsetOptions = () => ({
  ...unsetHttpOptions(),
  scope: undefined,
  fingerprint: undefined,
  decideIn: unset<'preHandler' | 'preParsing'>(),
});

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

function newApp(): FastifyInstance {
  const app = Fastify();
  apps.push(app);
  return app;
}

const post = (app: FastifyInstance, url: string, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url, payload: { a: 1 }, headers });

describe('options given as undefined', () => {
  it('plugin options undefined mean the defaults: runs a request once and replays it', async () => {
    const options: FastifyIdempotencyOptions = {
      store: memoryStore(),
      global: unset<boolean>(),
      ...unsetOptions(),
    };
    let runs = 0;
    const app = newApp();
    await app.register(idempotency, options);
    app.post('/orders', async (request, reply) =>
      reply.code(201).send({ run: ++runs, received: request.body }),
    );
    app.put('/orders', async (request) => ({ covered: request.idempotency !== null }));
    await app.ready();

    const first = await post(app, '/orders', { 'idempotency-key': 'k-1' });
    expect(first.statusCode).toBe(201);
    expect(first.json()).toEqual({ run: 1, received: { a: 1 } });
    const replay = await post(app, '/orders', { 'idempotency-key': 'k-1' });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual({ run: 1, received: { a: 1 } });
    expect(runs).toBe(1);
    expect((await post(app, '/orders')).statusCode).toBe(400); // required: true
    const put = await app.inject({ method: 'PUT', url: '/orders' }); // methods: POST, PATCH
    expect(put.json()).toEqual({ covered: false });
  });

  it("route settings undefined keep the plugin's values (store, required, headerName, ...)", async () => {
    const everySettingUnset: RouteIdempotencyConfig = {
      store: undefined,
      prefix: unset<string>(),
      ...unsetOptions(),
    };
    let runs = 0;
    const app = newApp();
    await app.register(idempotency, { store: memoryStore(), required: false, headerName: 'x-request-key' });
    app.post('/orders', { config: { idempotency: everySettingUnset } }, async (_request, reply) =>
      reply.code(201).send({ run: ++runs }),
    );
    await app.ready();

    // The plugin's header name, not the default Idempotency-Key.
    const first = await post(app, '/orders', { 'x-request-key': 'k-1' });
    expect(first.statusCode).toBe(201);
    const replay = await post(app, '/orders', { 'x-request-key': 'k-1' });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual({ run: 1 });
    // The plugin's `required: false`, not the default `true`: a request without a key passes through.
    expect((await post(app, '/orders')).json()).toEqual({ run: 2 });
  });

  it("route settings required and headerName undefined keep the plugin's", async () => {
    const app = newApp();
    await app.register(idempotency, { store: memoryStore(), required: false, headerName: 'x-request-key' });
    let runs = 0;
    app.post(
      '/lenient',
      {
        config: {
          idempotency: { required: unset<boolean>(), headerName: unset<string>(), methods: ['POST'] },
        },
      },
      async () => ({ run: ++runs }),
    );
    await app.ready();
    expect((await post(app, '/lenient')).json()).toEqual({ run: 1 });
    await post(app, '/lenient', { 'x-request-key': 'k-1' });
    const replay = await post(app, '/lenient', { 'x-request-key': 'k-1' });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual({ run: 2 });
  });
});
