import {
  captureWebResponse,
  createIdempotencyHandler,
  type HttpIdempotencyOptions,
  type HttpRequest,
  handleOrStream,
  type IdempotencyContext,
  type IncomingBody,
  isJsonContentType,
  isNullBodyStatus,
  readIncomingBody,
  webHttpRequest,
} from '@idem/core';
import type { Context, MiddlewareHandler } from 'hono';
import type { StatusCode } from 'hono/utils/http-status';

export {
  type HttpIdempotencyOptions,
  type IdempotencyContext,
  IdempotencyError,
  type IdempotencyErrorCode,
  type IdempotencyEvent,
  isIdempotencyError,
  type Operation,
  type ProblemDetails,
  type Store,
  type StoredHeadersOptions,
} from '@idem/core';

/** Options of {@link idempotency}: the HTTP options of `@idem/core`, with `scope` given Hono's context. */
export interface IdempotencyOptions extends Omit<HttpIdempotencyOptions, 'scope'> {
  /**
   * Who is asking: the same key from two scopes is two operations, and a response is never replayed
   * to another scope. Default: the `Authorization` header (hashed). Set it to your tenant or user id as
   * your authentication verified it, e.g. `(c) => c.get('jwtPayload').sub` (mount idem after it).
   */
  scope?: ((c: Context) => string | Promise<string>) | undefined;
}

/**
 * The variables the middleware sets, for `new Hono<{ Variables: IdempotencyVariables }>()`:
 * `c.get('idempotency')` is the operation the route runs under, or `undefined` when idem does not
 * cover the request (another method, or no key with `required: false`).
 */
export type IdempotencyVariables = {
  /** The operation the route runs under; `undefined` when idem does not cover the request. */
  idempotency: IdempotencyContext | undefined;
};

/** The Hono environment the middleware declares. */
export type IdempotencyEnv = {
  /** The variables the middleware sets, read with `c.get`. */
  Variables: IdempotencyVariables;
};

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
  const { scope, ...rest } = options;
  const layer = createIdempotencyHandler(
    scope ? { ...rest, scope: (request) => scope((request as HonoHttpRequest).c) } : rest,
  );
  return async (c, next) => {
    if (!layer.covers(c.req.method)) {
      await next();
      return;
    }
    const request = honoHttpRequest(c);
    const errorBefore = c.error;
    let thrown: Error | undefined;
    try {
      // A streamed response goes out at once (the middleware returns); its end waits for the record.
      const result = await handleOrStream((streaming) =>
        layer.handle(request, async (context) => {
          c.set('idempotency', context);
          await next();
          // Hono has already turned a thrown error into its error response; the record is released
          // (by rejecting) so that a retry runs again, and the error response stands.
          if (c.error !== undefined && c.error !== errorBefore) {
            thrown = c.error;
            throw c.error;
          }
          const capture = await captureWebResponse(c.res, layer.maxResponseBytes);
          if (capture.response !== c.res) {
            // Cleared first, so that Hono does not merge the old response's headers into the new one.
            c.res = undefined;
            c.res = capture.response;
          }
          if (capture.streaming) streaming(capture);
          return capture.captured;
        }),
      );
      if ('streaming' in result) return;
      if (result.action === 'respond') {
        // Through c.newResponse, so that headers earlier middleware prepared (c.header) are kept; the
        // body as bytes, not a stream, so that the server can send it in one write with its
        // Content-Length. No intermediate Response: reading one's body makes @hono/node-server build
        // a full Web Response, stream included.
        const { status, headers, body } = result.response;
        const record: Record<string, string | string[]> = {};
        for (const [name, value] of headers) {
          const previous = record[name];
          record[name] = previous === undefined ? value : [previous, value].flat();
        }
        return c.newResponse(
          isNullBodyStatus(status) ? null : (body as Uint8Array<ArrayBuffer>),
          status as StatusCode,
          record,
        );
      }
      if (result.action === 'next') await next();
    } catch (error) {
      if (thrown === undefined || error !== thrown) throw error;
    }
    return;
  };
}

/**
 * On Node (@hono/node-server), the Node request behind `c.req.raw`, while nobody has read from it:
 * reading it directly spares building the Web request and its stream, which costs more than the rest
 * of the middleware. What is read goes back into it, so `c.req.raw.body` still works afterwards.
 */
function untouchedIncoming(c: Context): (IncomingBody & NodeStreamState) | undefined {
  const incoming = (c.env as { incoming?: Partial<IncomingBody & NodeStreamState> } | undefined)?.incoming;
  if (
    typeof incoming?.read !== 'function' ||
    typeof incoming.unshift !== 'function' ||
    typeof incoming.listenerCount !== 'function' ||
    typeof incoming.complete !== 'boolean'
  ) {
    return undefined;
  }
  const untouched =
    incoming.readableFlowing === null &&
    incoming.readableEnded === false &&
    incoming.listenerCount('data') === 0 &&
    incoming.listenerCount('readable') === 0;
  return untouched ? (incoming as IncomingBody & NodeStreamState) : undefined;
}

/** What says whether a Node stream was read from already. */
interface NodeStreamState {
  readonly readableFlowing: boolean | null;
  readonly readableEnded: boolean;
  listenerCount(event: string): number;
}

function readIncoming(incoming: IncomingBody, limit: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    readIncomingBody(incoming, limit, (error, body) => {
      if (error !== null || body === undefined) reject(error);
      // Over the limit, the layer answers 413 from the length.
      else resolve(body.bytes);
    });
  });
}

const FORM_TYPE = /^\s*(multipart\/form-data|application\/x-www-form-urlencoded)\s*(;|$)/i;

// As Body#text() decodes: UTF-8, a leading BOM dropped, invalid bytes replaced.
const utf8 = new TextDecoder();

/** The request as the core sees it; the body, once read, goes to Hono's body cache for the route. */
function honoHttpRequest(c: Context): HttpRequest {
  return new HonoHttpRequest(c);
}

// A class rather than an object of closures: one is built per request.
class HonoHttpRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;
  private readonly web: HttpRequest;

  constructor(readonly c: Context) {
    this.web = webHttpRequest(c.req.raw);
    this.method = this.web.method;
    this.path = this.web.path;
  }

  header(name: string): string | null | undefined {
    return this.web.header(name);
  }

  async body(limit: number): Promise<Uint8Array> {
    const { req } = this.c;
    // Looked at first: asking the Web request anything about its body makes @hono/node-server build it.
    const incoming = untouchedIncoming(this.c);
    // An earlier middleware already read the body through c.req: take it from Hono's cache.
    if (!incoming && req.raw.bodyUsed) return new Uint8Array(await req.arrayBuffer());
    const bytes = incoming ? await readIncoming(incoming, limit) : await this.web.body(limit);
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    // Hono keeps bodies read through c.req as promises (its `BodyCache` type says otherwise). Any other
    // form is derived from the first one cached through a new Response, which costs more than the rest
    // of the middleware: text bodies (c.req.json() and c.req.text() read text) get their text too,
    // after the bytes, which stay first for the other forms.
    const cache = req.bodyCache as unknown as { arrayBuffer?: Promise<ArrayBuffer>; text?: Promise<string> };
    cache.arrayBuffer = Promise.resolve(buffer);
    const type = this.web.header('content-type');
    if (isJsonContentType(type) || type?.trimStart().toLowerCase().startsWith('text/')) {
      cache.text = Promise.resolve(utf8.decode(bytes));
    } else if (type && FORM_TYPE.test(type)) {
      // Hono before 4.13.8 derives a form from the cached bytes without the request's Content-Type,
      // and fails (c.req.parseBody(), c.req.formData(): 500): the form is cached too. A malformed one
      // is left to Hono, which answers it as it would without idem.
      try {
        const form = await new Response(buffer, { headers: { 'content-type': type } }).formData();
        (cache as { formData?: Promise<FormData> }).formData = Promise.resolve(form);
      } catch {}
    }
    return bytes;
  }
}
