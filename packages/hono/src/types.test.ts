import type { IdempotencyContext } from '@idem/core';
import { memoryStore } from '@idem/memory';
import { Hono, type MiddlewareHandler } from 'hono';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { type IdempotencyEnv, type IdempotencyVariables, idempotency } from './index.js';

// The expectTypeOf lines are checked by `tsc --noEmit` (they are no-ops at run time).
describe('types', () => {
  it('types c.get("idempotency") through the middleware, and through the app Variables', async () => {
    expectTypeOf(idempotency).returns.toEqualTypeOf<MiddlewareHandler<IdempotencyEnv>>();
    expectTypeOf<IdempotencyVariables['idempotency']>().toEqualTypeOf<IdempotencyContext | undefined>();

    const seen: Array<string | undefined> = [];
    const routed = new Hono().post('/orders', idempotency({ store: memoryStore() }), (c) => {
      const context = c.get('idempotency');
      expectTypeOf(context).toEqualTypeOf<IdempotencyContext | undefined>();
      expectTypeOf(c.var.idempotency).toEqualTypeOf<IdempotencyContext | undefined>();
      seen.push(context?.key);
      return c.json({ key: context?.key ?? null }, 201);
    });

    const app = new Hono<{ Variables: IdempotencyVariables }>();
    app.use(idempotency({ store: memoryStore() }));
    app.post('/orders', (c) => {
      expectTypeOf(c.get('idempotency')).toEqualTypeOf<IdempotencyContext | undefined>();
      seen.push(c.get('idempotency')?.key);
      return c.body(null, 204);
    });

    const init = { method: 'POST', headers: { 'idempotency-key': '"typed"' } };
    expect((await routed.request('/orders', init)).status).toBe(201);
    expect((await app.request('/orders', init)).status).toBe(204);
    expect(seen).toEqual(['typed', 'typed']);
  });
});
