import type { IdempotencyContext, Operation } from '@idem/core';
import express, { type ErrorRequestHandler, type Request, type RequestHandler } from 'express';
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

  it('exports its own two functions and, of the core, the error and its guard (as the other bindings)', () => {
    expect(Object.keys(binding).sort()).toEqual([
      'IdempotencyError',
      'idempotency',
      'idempotencyErrorHandler',
      'isIdempotencyError',
    ]);
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
