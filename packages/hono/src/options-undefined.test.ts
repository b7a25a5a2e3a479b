import { unset, unsetHttpOptions } from '@idem/http-test-suite';
import { memoryStore } from '@idem/memory';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { type IdempotencyOptions, type IdempotencyVariables, idempotency } from './index.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.

const options: IdempotencyOptions = {
  store: memoryStore(),
  ...unsetHttpOptions(),
  scope: undefined,
  fingerprint: undefined,
  prefix: unset<string>(),
};

describe('idempotency() with every option undefined', () => {
  it('runs a request once and replays it, as with no options', async () => {
    let runs = 0;
    const app = new Hono<{ Variables: IdempotencyVariables }>();
    app.use(idempotency(options));
    app.post('/orders', async (c) => c.json({ run: ++runs, received: await c.req.json() }, 201));
    app.put('/orders', (c) => c.json({ covered: c.get('idempotency') !== undefined }));
    const post = (key: string | null) =>
      app.request('/orders', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key === null ? {} : { 'idempotency-key': key }) },
        body: '{"a":1}',
      });

    const first = await post('k-1');
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ run: 1, received: { a: 1 } });
    const replay = await post('k-1');
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.json()).toEqual({ run: 1, received: { a: 1 } });
    expect(runs).toBe(1);
    expect((await post(null)).status).toBe(400); // required: true
    const put = await app.request('/orders', { method: 'PUT' }); // methods: POST, PATCH
    expect(await put.json()).toEqual({ covered: false });
  });
});
