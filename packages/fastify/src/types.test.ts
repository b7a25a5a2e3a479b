import type { IdempotencyContext } from '@idem/core';
import { memoryStore } from '@idem/memory';
import Fastify, { type FastifyContextConfig, type FastifyRequest } from 'fastify';
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
import { type FastifyIdempotencyOptions, idempotency, type RouteIdempotencyConfig } from './index.js';

// Checked by `tsc --noEmit` (the package's typecheck); at run time these assertions do nothing.
describe('types', () => {
  it('types request.idempotency for handlers and hooks', async () => {
    const app = Fastify();
    await app.register(idempotency, { store: memoryStore() });
    app.post('/orders', async (request) => {
      expectTypeOf(request.idempotency).toEqualTypeOf<IdempotencyContext | null>();
      return { key: request.idempotency?.key };
    });
    app.addHook('preHandler', async (request) => {
      expectTypeOf(request.idempotency?.operation.signal).toEqualTypeOf<AbortSignal | undefined>();
    });
    await app.close();
  });

  it('types the route config', () => {
    expectTypeOf<FastifyContextConfig['idempotency']>().toEqualTypeOf<RouteIdempotencyConfig | undefined>();
    const app = Fastify();
    app.post('/free', { config: { idempotency: false } }, async () => 'ok');
    app.post(
      '/optional',
      { config: { idempotency: { required: false, methods: ['POST'] } } },
      async () => 'ok',
    );
    app.post('/early', { config: { idempotency: { decideIn: 'preParsing' } } }, async () => 'ok');
    // @ts-expect-error `required` is a boolean
    app.post('/bad', { config: { idempotency: { required: 'no' } } }, async () => 'ok');
    // @ts-expect-error idem decides in preHandler or preParsing only
    app.post('/late', { config: { idempotency: { decideIn: 'onSend' } } }, async () => 'ok');
  });

  it('types the plugin options, with scope over Fastify requests', () => {
    expectTypeOf<FastifyIdempotencyOptions['scope']>().toEqualTypeOf<
      ((request: FastifyRequest) => string | Promise<string>) | undefined
    >();
    const app = Fastify();
    // @ts-expect-error `store` is required
    app.register(idempotency, { required: false });
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
