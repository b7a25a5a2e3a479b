import { IdempotencyError } from '../errors.js';
import { concatBytes } from './bytes.js';
import { createIdempotencyHandler, type HttpIdempotencyOptions } from './handler.js';
import type { CapturedResponse, HttpRequest, HttpResponse, IdempotencyContext } from './types.js';

/**
 * Read a Web body stream up to `limit` bytes.
 * @throws IdempotencyError `request_too_large` past the limit (the rest is not read).
 */
export async function readBodyWithLimit(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<Uint8Array> {
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > limit) {
      await reader.cancel().catch(() => {});
      throw new IdempotencyError('request_too_large', `the request body is larger than ${limit} bytes`);
    }
    chunks.push(value);
  }
  return concat(chunks, length);
}

/** An {@link HttpRequest} over a Web `Request`; the body read is kept for the route in `bodyBytes()`. */
export function webHttpRequest(request: Request): HttpRequest & { bodyBytes(): Uint8Array | null } {
  return new WebHttpRequest(request);
}

// A class rather than an object of closures: one is built per request.
class WebHttpRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;
  private bytes: Uint8Array | null = null;

  constructor(private readonly request: Request) {
    this.method = request.method;
    this.path = pathOf(request.url);
  }

  header(name: string): string | null {
    return this.request.headers.get(name);
  }

  async body(limit: number): Promise<Uint8Array> {
    this.bytes = await readBodyWithLimit(this.request.body, limit);
    return this.bytes;
  }

  bodyBytes(): Uint8Array | null {
    return this.bytes;
  }
}

/**
 * `pathname + search` of a serialised absolute URL (what `Request#url` always is), without parsing it
 * again with `new URL`: the path starts at the first `/` after the authority, which holds none.
 */
export function pathOf(url: string): string {
  const scheme = url.indexOf('://');
  if (scheme === -1) {
    const parsed = new URL(url);
    return parsed.pathname + parsed.search;
  }
  const start = url.indexOf('/', scheme + 3);
  if (start === -1) return '/';
  const hash = url.indexOf('#', start);
  let path = hash === -1 ? url.slice(start) : url.slice(start, hash);
  // `search` is empty for a bare `?`, as in `/orders?`.
  if (path.endsWith('?') && path.indexOf('?') === path.length - 1) path = path.slice(0, -1);
  return path;
}

/** A Web `Request` equal to `request` but with an already-read body. */
export function withBody(request: Request, body: Uint8Array | null): Request {
  const hasBody = body !== null && request.method !== 'GET' && request.method !== 'HEAD';
  return new Request(request.url, {
    method: request.method,
    headers: request.headers,
    body: hasBody ? (body as Uint8Array<ArrayBuffer>) : null,
    signal: request.signal,
  });
}

/**
 * Capture a Web `Response` for storing, without changing what the client receives: a body up to
 * `maxBytes` is buffered and returned in a fresh response; an event stream, or a body announced or
 * found larger than `maxBytes`, is passed through as a stream and captured without its body.
 */
export async function captureWebResponse(
  response: Response,
  maxBytes: number,
): Promise<{ captured: CapturedResponse; response: Response }> {
  const headers = [...response.headers.entries()];
  if (response.headers.has('set-cookie')) {
    // Headers#entries folds cookies into one value; keep them separate like the client gets them.
    const others = headers.filter(([name]) => name !== 'set-cookie');
    headers.length = 0;
    headers.push(
      ...others,
      ...response.headers.getSetCookie().map((value) => ['set-cookie', value] as [string, string]),
    );
  }
  const base = { status: response.status, headers };
  const type = response.headers.get('content-type') ?? '';
  const announced = Number(response.headers.get('content-length') ?? 0);
  if (response.body === null) return { captured: { ...base, body: new Uint8Array(0) }, response };
  if (type.toLowerCase().startsWith('text/event-stream')) {
    return { captured: { ...base, body: null, omitted: 'streaming' }, response };
  }
  if (announced > maxBytes) return { captured: { ...base, body: null, omitted: 'too_large' }, response };

  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.length;
    if (length > maxBytes) {
      // Too large after all: hand the client what was read, then the rest, untouched.
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          for (const chunk of chunks) controller.enqueue(chunk);
        },
        async pull(controller) {
          const next = await reader.read();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        },
        cancel: (reason) => reader.cancel(reason),
      });
      return { captured: { ...base, body: null, omitted: 'too_large' }, response: rebuild(response, stream) };
    }
  }
  const body = concat(chunks, length);
  return { captured: { ...base, body }, response: rebuild(response, body as Uint8Array<ArrayBuffer>) };
}

/**
 * Whether a response with this status has no body (1xx, 204 No Content, 205 Reset Content, 304 Not
 * Modified): the Fetch standard's `Response` refuses a body for them, even an empty one.
 */
export function isNullBodyStatus(status: number): boolean {
  return status < 200 || status === 204 || status === 205 || status === 304;
}

/** A Web `Response` from a complete {@link HttpResponse} (replays and problems). */
export function toWebResponse(response: HttpResponse): Response {
  const headers = new Headers();
  for (const [name, value] of response.headers) headers.append(name, value);
  return new Response(isNullBodyStatus(response.status) ? null : (response.body as Uint8Array<ArrayBuffer>), {
    status: response.status,
    headers,
  });
}

/** A Web handler that also receives the idempotency context (absent when idem does not cover the request). */
export type WebHandler = (
  request: Request,
  context: IdempotencyContext | null,
) => Response | Promise<Response>;

/**
 * Make any `(Request) => Promise<Response>` handler idempotent: Deno.serve, Bun.serve, Workers,
 * Next.js route handlers, or anything else built on Web `Request`/`Response`.
 */
export function withIdempotency(
  handler: WebHandler,
  options: HttpIdempotencyOptions,
): (request: Request) => Promise<Response> {
  const layer = createIdempotencyHandler(options);
  return async (request) => {
    if (!layer.covers(request.method)) return handler(request, null);
    const http = webHttpRequest(request);
    let sent: Response | undefined;
    const result = await layer.handle(http, async (context) => {
      const captured = await captureWebResponse(
        await handler(withBody(request, http.bodyBytes()), context),
        layer.maxResponseBytes,
      );
      sent = captured.response;
      return captured.captured;
    });
    if (result.action === 'respond') return toWebResponse(result.response);
    if (result.action === 'next')
      return handler(http.bodyBytes() === null ? request : withBody(request, http.bodyBytes()), null);
    return sent!;
  };
}

function rebuild(response: Response, body: BodyInit): Response {
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/** One chunk as it is (the reader's own), several joined. */
function concat(chunks: Uint8Array[], length: number): Uint8Array {
  return chunks.length === 1 ? chunks[0]! : concatBytes(chunks, length);
}
