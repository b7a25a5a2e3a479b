import type { IdempotencyContext, Operation } from '@idem/core';
import express, { type ErrorRequestHandler, type Request, type RequestHandler } from 'express';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { type ExpressIdempotencyOptions, idempotency, idempotencyErrorHandler } from './index.js';

// Checked by `tsc --noEmit` (and harmless at run time): what handlers and users see.
describe('types', () => {
  it('gives handlers req.idempotency typed through Express.Request', () => {
    const app = express();
    app.post('/orders', (req, res) => {
      expectTypeOf(req.idempotency).toEqualTypeOf<IdempotencyContext | undefined>();
      if (req.idempotency) {
        expectTypeOf(req.idempotency.key).toBeString();
        expectTypeOf(req.idempotency.operation).toEqualTypeOf<Operation>();
        expectTypeOf(req.idempotency.operation.signal).toEqualTypeOf<AbortSignal>();
      }
      res.end();
    });
    expectTypeOf<Request['idempotency']>().toEqualTypeOf<IdempotencyContext | undefined>();
  });

  it('types the middleware, the error handler and the Express form of scope', () => {
    expectTypeOf(idempotency).returns.toEqualTypeOf<RequestHandler>();
    expectTypeOf(idempotencyErrorHandler).returns.toEqualTypeOf<ErrorRequestHandler>();
    expectTypeOf<NonNullable<ExpressIdempotencyOptions['scope']>>().parameters.toEqualTypeOf<[Request]>();
    const withoutStore = () =>
      // @ts-expect-error the store is required
      idempotency({});
    expect(withoutStore).toThrow(/store is required/);
  });
});
