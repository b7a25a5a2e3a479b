import { gunzipSync } from 'node:zlib';
import { memoryStore } from '@idem/memory';
import { Hono } from 'hono';
import { compress } from 'hono/compress';
import { describe, expect, it } from 'vitest';
import { type IdempotencyEnv, idempotency } from './index.js';

// compress() before idem (outside it): idem stores the response the route made, and every answer (the
// first, each replay) is encoded as its own request asks.
describe('compress() before idem', () => {
  it('stores the body the route wrote; the first answer and each replay are encoded as asked', async () => {
    const store = memoryStore();
    let runs = 0;
    let storage = '';
    const app = new Hono<IdempotencyEnv>();
    app.use(compress(), idempotency({ store }));
    // Over compress()'s 1 KiB threshold, so gzip is used whenever the request accepts it.
    app.post('/orders', async (c) => {
      storage = c.get('idempotency')!.storageKey;
      const { item } = await c.req.json<{ item: string }>();
      return c.json({ run: ++runs, item, note: 'compressible '.repeat(100) }, 201);
    });
    const body = { run: 1, item: 'book', note: 'compressible '.repeat(100) };
    const post = async (acceptEncoding: string) => {
      const response = await app.request('/orders', {
        method: 'POST',
        headers: {
          'idempotency-key': 'k-compress',
          'content-type': 'application/json',
          'accept-encoding': acceptEncoding,
        },
        body: '{"item":"book"}',
      });
      const raw = Buffer.from(await response.arrayBuffer());
      const encoding = response.headers.get('content-encoding');
      return {
        status: response.status,
        encoding,
        replayed: response.headers.get('idempotent-replayed'),
        json: JSON.parse((encoding === 'gzip' ? gunzipSync(raw) : raw).toString()),
      };
    };

    expect(await post('gzip')).toEqual({ status: 201, encoding: 'gzip', replayed: null, json: body });
    expect(await post('identity')).toEqual({ status: 201, encoding: null, replayed: 'true', json: body });
    expect(await post('gzip, deflate')).toEqual({
      status: 201,
      encoding: 'gzip',
      replayed: 'true',
      json: body,
    });
    expect(runs).toBe(1);

    const record = await store.get(storage);
    expect(JSON.parse(Buffer.from(record!.response!.body).toString())).toEqual(body);
    expect(record!.response!.headers.map(([name]) => name)).not.toContain('content-encoding');
  });
});
