import { memoryStore } from '@idem/memory';
import { Hono } from 'hono';
import { cors } from 'hono/cors';
import { describe, expect, it } from 'vitest';
import { type IdempotencyEnv, idempotency } from './index.js';

// A browser on another origin: the preflight must allow the Idempotency-Key header, and every answer
// (the first, a replay, idem's own problems) must expose Idempotent-Replayed and Retry-After, or the
// page (and @idem/fetch in it) cannot read them. cors() before idem, as the README says.
describe('cors() before idem, for a browser client on another origin', () => {
  const origin = 'https://shop.example';
  const app = new Hono<IdempotencyEnv>();
  app.use(
    cors({ origin, exposeHeaders: ['Idempotent-Replayed', 'Retry-After'] }),
    idempotency({ store: memoryStore() }),
  );
  let release: () => void = () => {};
  app.post('/orders', async (c) => {
    const { wait } = await c.req.json<{ wait?: boolean }>();
    if (wait) await new Promise<void>((resolve) => (release = resolve));
    return c.json({ ok: true }, 201);
  });
  const post = (key: string, body: unknown) =>
    app.request('/orders', {
      method: 'POST',
      headers: { origin, 'idempotency-key': key, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const exposed = (response: Response) => ({
    status: response.status,
    allowOrigin: response.headers.get('access-control-allow-origin'),
    expose: response.headers.get('access-control-expose-headers'),
  });

  it('lets the preflight through with Idempotency-Key allowed', async () => {
    const preflight = await app.request('/orders', {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, idempotency-key',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('idempotency-key');
  });

  it('exposes Idempotent-Replayed and Retry-After on the first answer, a replay, a 409 and a 422', async () => {
    const expose = 'Idempotent-Replayed,Retry-After';
    expect(exposed(await post('k-cors', {}))).toEqual({ status: 201, allowOrigin: origin, expose });
    const replay = await post('k-cors', {});
    expect(exposed(replay)).toEqual({ status: 201, allowOrigin: origin, expose });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(exposed(await post('k-cors', { other: 1 }))).toEqual({ status: 422, allowOrigin: origin, expose });

    const running = post('k-cors-busy', { wait: true });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const busy = await post('k-cors-busy', { wait: true });
    expect(exposed(busy)).toEqual({ status: 409, allowOrigin: origin, expose });
    expect(busy.headers.get('retry-after')).toBe('1');
    release();
    expect((await running).status).toBe(201);
  });
});
