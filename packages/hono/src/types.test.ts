import type { IdempotencyContext } from '@idem/core';
import { memoryStore } from '@idem/memory';
import { Hono, type MiddlewareHandler } from 'hono';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type {
  HttpIdempotencyOptions,
  IdempotencyErrorCode,
  IdempotencyEvent,
  ProblemDetails,
  IdempotencyContext as ReexportedContext,
  Operation as ReexportedOperation,
  Store,
  StoredHeadersOptions,
} from './index.js';
import * as binding from './index.js';
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

  it('exports its own function and, of the core, the error and its guard (as the other bindings)', () => {
    expect(Object.keys(binding).sort()).toEqual(['IdempotencyError', 'idempotency', 'isIdempotencyError']);
  });

  it('re-exports the same core types as the other bindings', () => {
    expectTypeOf<HttpIdempotencyOptions>().toHaveProperty('store');
    expectTypeOf<ReexportedContext>().toHaveProperty('storageKey');
    expectTypeOf<IdempotencyErrorCode>().toExtend<string>();
    expectTypeOf<IdempotencyEvent>().toHaveProperty('type');
    expectTypeOf<ReexportedOperation>().toHaveProperty('signal');
    expectTypeOf<ProblemDetails>().toHaveProperty('code');
    expectTypeOf<Store>().toHaveProperty('acquire');
    expectTypeOf<StoredHeadersOptions>().toHaveProperty('deny');
  });
});
