import {
  captureWebResponse,
  createIdempotencyHandler,
  type HttpIdempotencyOptions,
  type HttpRequest,
  type IdempotencyContext,
  toWebResponse,
  webHttpRequest,
} from '@idem/core';
import type { Context, MiddlewareHandler } from 'hono';

export {
  type HttpIdempotencyOptions,
  type IdempotencyContext,
  IdempotencyError,
  type IdempotencyErrorCode,
  isIdempotencyError,
  type Operation,
  type ProblemDetails,
  type Store,
} from '@idem/core';

/** Options of {@link idempotency}: the HTTP options of `@idem/core`, `store` required. */
export type IdempotencyOptions = HttpIdempotencyOptions;

/**
 * The variables the middleware sets, for `new Hono<{ Variables: IdempotencyVariables }>()`:
 * `c.get('idempotency')` is the operation the route runs under, or `undefined` when idem does not
 * cover the request (another method, or no key with `required: false`).
 */
export type IdempotencyVariables = {
  idempotency: IdempotencyContext | undefined;
};

/** The Hono environment the middleware declares. */
export type IdempotencyEnv = { Variables: IdempotencyVariables };

/**
 * Hono middleware making `POST`/`PATCH` routes idempotent with the `Idempotency-Key` header: the first
 * request runs, a retry gets the stored response (`Idempotent-Replayed: true`), concurrent duplicates
 * get `409` (or wait, opted in). Built on Web `Request`/`Response` only: Node, Bun, Deno and Workers.
 *
 * The body is read once by idem and left in Hono's body cache, so `c.req.json()`, `c.req.text()`,
 * `c.req.parseBody()` and validators work as usual (use `cloneRawRequest(c.req)` for a raw `Request`).
 *
 * ```ts
 * app.post('/orders', idempotency({ store: memoryStore() }), async (c) => c.json(await create(c), 201));
 * ```
 */
export function idempotency(options: IdempotencyOptions): MiddlewareHandler<IdempotencyEnv> {
  const layer = createIdempotencyHandler(options);
  return async (c, next) => {
    if (!layer.covers(c.req.method)) {
      await next();
      return;
    }
    const request = honoHttpRequest(c);
    const errorBefore = c.error;
    let thrown: Error | undefined;
    try {
      const result = await layer.handle(request, async (context) => {
        c.set('idempotency', context);
        await next();
        // Hono has already turned a thrown error into its error response; the record is released
        // (by rejecting) so that a retry runs again, and the error response stands.
        if (c.error !== undefined && c.error !== errorBefore) {
          thrown = c.error;
          throw c.error;
        }
        const { captured, response } = await captureWebResponse(c.res, layer.maxResponseBytes);
        if (response !== c.res) {
          // Cleared first, so that Hono does not merge the old response's headers into the new one.
          c.res = undefined;
          c.res = response;
        }
        return captured;
      });
      if (result.action === 'respond') {
        // Through c.newResponse, so that headers earlier middleware prepared (c.header) are kept; the
        // body as bytes, not a stream, so that the server can send its Content-Length.
        const response = toWebResponse(result.response);
        const body = response.body === null ? null : (result.response.body as Uint8Array<ArrayBuffer>);
        return c.newResponse(body, response);
      }
      if (result.action === 'next') await next();
    } catch (error) {
      if (thrown === undefined || error !== thrown) throw error;
    }
    return;
  };
}

/** The request as the core sees it; the body, once read, goes to Hono's body cache for the route. */
function honoHttpRequest(c: Context): HttpRequest {
  const web = webHttpRequest(c.req.raw);
  return {
    method: web.method,
    path: web.path,
    header: web.header,
    async body(limit) {
      // An earlier middleware already read the body through c.req: take it from Hono's cache.
      if (c.req.raw.bodyUsed) return new Uint8Array(await c.req.arrayBuffer());
      const bytes = await web.body(limit);
      const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      // Hono keeps bodies read through c.req as promises (its `BodyCache` type says otherwise).
      (c.req.bodyCache as unknown as { arrayBuffer?: Promise<ArrayBuffer> }).arrayBuffer =
        Promise.resolve(buffer);
      return bytes;
    },
  };
}
