import { IdempotencyError } from '../errors.js';
import type { OmittedBody } from '../store.js';
import { concatBytes } from './bytes.js';
import { createIdempotencyHandler, type HttpIdempotencyOptions } from './handler.js';
import type {
  CapturedResponse,
  HandleResult,
  HttpRequest,
  HttpResponse,
  IdempotencyContext,
} from './types.js';

// Named through the values Node's types declare too: `ReadableStreamReadResult` and `BodyInit` are
// global only in the DOM library, and these declarations must compile without it.
/** What a byte stream's reader gives. */
type ReadResult = Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']>>;
/** What a `Response` may be built from. */
type ResponseBody = ConstructorParameters<typeof Response>[0];

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
  return new WebHttpRequest(request, false);
}

// A class rather than an object of closures: one is built per request.
class WebHttpRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;
  private bytes: Uint8Array | null = null;

  /** `keepBody`: read a clone's body, so that the request itself stays readable for the route. */
  constructor(
    private readonly request: Request,
    private readonly keepBody: boolean,
  ) {
    this.method = request.method;
    this.path = pathOf(request.url);
  }

  header(name: string): string | null {
    return this.request.headers.get(name);
  }

  async body(limit: number): Promise<Uint8Array> {
    const { request } = this;
    const source = this.keepBody && request.body !== null ? request.clone() : request;
    this.bytes = await readBodyWithLimit(source.body, limit);
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

/**
 * A plain Web `Request` with the method, URL, headers and signal of `request` and an already-read
 * body. What the runtime adds to its requests (`cf` on Workers, `NextRequest`'s fields) is not
 * carried over: {@link withIdempotency} hands the route the original request instead.
 */
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
 * A route's `Response` as {@link captureWebResponse} captured it. Send `response` in either case:
 * - `streaming: false`: the body was complete when the route returned it (bytes, a string, a stream
 *   that had already ended), and `captured` holds it. Send `response` once the record is stored.
 * - `streaming: true`: the body is still being produced. Send `response` at once: its body reaches the
 *   client chunk by chunk as the route writes it, while up to `maxBytes` of it are kept. `captured`
 *   settles when the route's body ends (body kept, or omitted when over `maxBytes` or an event
 *   stream), or when the client cancels it (omitted: the route ran, and a retry must not run it
 *   again); it rejects when the route's body fails. The end of `response` is held until `flush` is
 *   called, which the caller does once the record is completed or released, so that a client who got
 *   the whole response and retries gets its replay, never "in flight".
 */
export type WebResponseCapture =
  | { streaming: false; response: Response; captured: CapturedResponse }
  | {
      streaming: true;
      response: Response;
      captured: Promise<CapturedResponse>;
      /** End the response (the record was completed or released), or fail it with `error`. */
      flush(error?: unknown): void;
    };

/**
 * Capture a Web `Response` for storing without changing what the client receives (see
 * {@link WebResponseCapture}). A body that is already complete is captured at once; any other body
 * (a stream still being written, an event stream, a body announced larger than `maxBytes`) is passed
 * through chunk by chunk and captured as it goes. A body over `maxBytes` is never kept truncated: it is
 * captured without its body (`omitted: 'too_large'`).
 */
export async function captureWebResponse(response: Response, maxBytes: number): Promise<WebResponseCapture> {
  const held = heldBody(response);
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
  const head = { status: response.status, headers };
  if (typeof held === 'string' || held instanceof Uint8Array) {
    // Sent as it is: the response was not touched.
    return { streaming: false, response, captured: completeBody(head, held, maxBytes) };
  }
  const lightweight = held !== undefined;
  const body = held instanceof ReadableStream ? held : response.body;
  if (body === null) return { streaming: false, response, captured: { ...head, body: new Uint8Array(0) } };
  const type = response.headers.get('content-type') ?? '';
  const omitted: OmittedBody | undefined = type.toLowerCase().startsWith('text/event-stream')
    ? 'streaming'
    : Number(response.headers.get('content-length') ?? 0) > maxBytes
      ? 'too_large'
      : undefined;
  const reader = body.getReader();
  if (omitted !== undefined)
    return streamed(response, new StreamedBody(head, reader, maxBytes, omitted), lightweight);

  // What the stream holds before the event loop turns: a body built whole (Response from bytes or a
  // string) has ended by then, a stream the route still writes has not. Past maxBytes it streams on.
  const chunks: Uint8Array[] = [];
  let length = 0;
  const turn = nextTurn();
  try {
    for (;;) {
      const pending = reader.read();
      const next = await Promise.race([pending, turn.promise]);
      if (next === undefined) {
        return streamed(
          response,
          new StreamedBody(head, reader, maxBytes, undefined, chunks, pending),
          lightweight,
        );
      }
      if (next.done) break;
      const chunk = next.value;
      if (!(chunk instanceof Uint8Array)) {
        chunks.push(chunk);
        return streamed(response, new StreamedBody(head, reader, maxBytes, 'streaming', chunks), lightweight);
      }
      chunks.push(chunk);
      length += chunk.length;
      if (length > maxBytes) {
        return streamed(response, new StreamedBody(head, reader, maxBytes, 'too_large', chunks), lightweight);
      }
    }
  } finally {
    turn.cancel();
  }
  const bytes = concat(chunks, length);
  return {
    streaming: false,
    response: rebuild(response, bytes as Uint8Array<ArrayBuffer>, lightweight),
    captured: { ...head, body: bytes },
  };
}

type Head = Pick<CapturedResponse, 'status' | 'headers'>;

const encoder = new TextEncoder();

function completeBody(head: Head, body: string | Uint8Array, maxBytes: number): CapturedResponse {
  // UTF-8 takes at least one byte per UTF-16 unit.
  if (body.length > maxBytes) return { ...head, body: null, omitted: 'too_large' };
  // Bytes are copied: the route may reuse its buffer once the response is sent.
  const bytes = typeof body === 'string' ? encoder.encode(body) : body.slice();
  if (bytes.length > maxBytes) return { ...head, body: null, omitted: 'too_large' };
  return { ...head, body: bytes };
}

function streamed(response: Response, body: StreamedBody, lightweight: boolean): WebResponseCapture {
  return {
    streaming: true,
    response: rebuild(response, body.stream, lightweight),
    captured: body.captured,
    flush: (error) => body.flush(error),
  };
}

/**
 * The body of @hono/node-server's `Response` (its global `Response` on Node), which keeps what the
 * route gave it under a symbol and builds a real Web `Response` only when asked for one (`body`,
 * `statusText`, ...): that costs more than the rest of idem's work. Found by duck typing, as core
 * imports nothing, and only for a `Response` class whose layout was checked (see
 * {@link heldBodySymbol}); `undefined` for any other `Response`.
 */
function heldBody(response: Response): string | Uint8Array | ReadableStream<Uint8Array> | undefined {
  const symbol = heldBodySymbol(response.constructor);
  if (symbol === null) return undefined;
  const cache = (response as unknown as Record<symbol, unknown>)[symbol];
  if (!Array.isArray(cache)) return undefined;
  const body: unknown = cache[1];
  if (typeof body === 'string' || body instanceof Uint8Array || body instanceof ReadableStream) return body;
  return undefined;
}

const heldBodySymbols = new WeakMap<object, symbol | null>();

/**
 * The symbol under which responses of this class keep `[status, body, headers]`, or `null`. Checked
 * once per class on a probe response of a known status and body, so that a release of
 * @hono/node-server that keeps its cache another way is read through the public API rather than
 * misread: a wrong body stored would be replayed for a whole ttl.
 */
function heldBodySymbol(type: unknown): symbol | null {
  if (typeof type !== 'function') return null;
  let symbol = heldBodySymbols.get(type);
  if (symbol === undefined) {
    symbol = null;
    try {
      const probe = new (type as typeof Response)('idem probe', { status: 299 });
      const found = Object.getOwnPropertySymbols(probe).find((key) => key.description === 'cache');
      const cache = found === undefined ? undefined : (probe as unknown as Record<symbol, unknown>)[found];
      if (Array.isArray(cache) && cache[0] === 299 && cache[1] === 'idem probe') symbol = found!;
    } catch {
      // Not a Response constructor after all.
    }
    heldBodySymbols.set(type, symbol);
  }
  return symbol;
}

/**
 * Resolves once the event loop has turned (a timer has run); `cancel` when no longer needed. One per
 * call, not one shared by the requests of a turn: on Workers a timer belongs to the request that set it
 * and never fires once that request has ended, and a promise of another request cannot be awaited.
 */
function nextTurn(): { promise: Promise<undefined>; cancel(): void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<undefined>((resolve) => {
    id = setTimeout(resolve, 0, undefined);
  });
  return { promise, cancel: () => clearTimeout(id) };
}

/**
 * A route's body passed through to the client chunk by chunk, as the client reads it, and captured up
 * to `maxBytes` on the way. Its end waits for {@link StreamedBody.flush}.
 */
class StreamedBody {
  readonly stream: ReadableStream<Uint8Array>;
  readonly captured: Promise<CapturedResponse>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private settle!: (captured: CapturedResponse) => void;
  private abort!: (error: unknown) => void;
  private state: 'reading' | 'ended' | 'cancelled' | 'failed' | 'closed' = 'reading';
  private flushed = false;
  private failure: unknown;
  private chunks: Uint8Array[];
  private length = 0;

  constructor(
    private readonly head: Head,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly maxBytes: number,
    private omitted: OmittedBody | undefined,
    prefix: Uint8Array[] = [],
    private pending?: Promise<ReadResult>,
  ) {
    this.captured = new Promise((resolve, reject) => {
      this.settle = resolve;
      this.abort = reject;
    });
    const chunks: Uint8Array[] = omitted === undefined ? prefix : [];
    for (const chunk of chunks) this.length += chunk.length;
    this.chunks = chunks;
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
          for (const chunk of prefix) controller.enqueue(chunk);
        },
        pull: () => this.pull(),
        cancel: (reason) => this.cancel(reason),
      },
      // Read from the route only as the client reads, as without idem.
      { highWaterMark: 0 },
    );
  }

  /** The record was completed or released: let the end through (or fail the response with `error`). */
  flush(error?: unknown): void {
    this.flushed = true;
    const { state } = this;
    if (state === 'cancelled' || state === 'closed') return;
    if (state === 'ended' && error === undefined) {
      this.state = 'closed';
      this.controller.close();
    } else if (state === 'failed' || error !== undefined) {
      this.state = 'closed';
      this.controller.error(state === 'failed' ? this.failure : error);
      if (state === 'reading') void this.reader.cancel(error).catch(() => {});
    }
  }

  private async pull(): Promise<void> {
    let next: ReadResult;
    try {
      next = await (this.pending ?? this.reader.read());
    } catch (error) {
      this.pending = undefined;
      if (this.state !== 'reading') return;
      // The route's body failed: the route failed, its record is released. The client's response
      // fails once that is done.
      this.state = 'failed';
      this.failure = error;
      this.abort(error);
      if (this.flushed) this.flush();
      return;
    }
    this.pending = undefined;
    if (this.state !== 'reading') return;
    if (next.done) {
      this.state = 'ended';
      const { head, omitted } = this;
      this.settle(
        omitted === undefined
          ? { ...head, body: concat(this.chunks, this.length) }
          : { ...head, body: null, omitted },
      );
      if (this.flushed) this.flush();
      return;
    }
    this.collect(next.value);
    this.controller.enqueue(next.value);
  }

  private collect(chunk: unknown): void {
    if (this.omitted !== undefined) return;
    if (!(chunk instanceof Uint8Array)) {
      this.omitted = 'streaming';
    } else {
      this.length += chunk.length;
      if (this.length > this.maxBytes) this.omitted = 'too_large';
      else this.chunks.push(chunk);
    }
    if (this.omitted !== undefined) this.chunks = [];
  }

  private async cancel(reason: unknown): Promise<void> {
    if (this.state !== 'reading') return;
    // The client went away mid-body. The route ran: the record completes without a body, so that a
    // retry is told so instead of running it again.
    this.state = 'cancelled';
    this.settle({ ...this.head, body: null, omitted: this.omitted ?? 'streaming' });
    this.chunks = [];
    await this.reader.cancel(reason).catch(() => {});
  }
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

/** A {@link WebResponseCapture} of a body still being written. */
export type StreamingCapture = WebResponseCapture & { streaming: true };

/**
 * The layer's answer to a request, or the route's response as soon as it turns out to be streaming,
 * whichever comes first. `handle` runs `layer.handle(...)`, and its route calls `streaming` with a
 * streaming capture: that response is to be sent at once, and its end goes out once the layer has
 * completed or released the record (failed with the layer's error, if it threw).
 */
export function handleOrStream(
  handle: (streaming: (capture: StreamingCapture) => void) => Promise<HandleResult>,
): Promise<HandleResult | StreamingCapture> {
  return new Promise((resolve, reject) => {
    let handled: Promise<HandleResult> | undefined;
    const streaming = (capture: StreamingCapture) => {
      resolve(capture);
      // A microtask later, `handled` exists even if the route ran before `handle` returned.
      void Promise.resolve()
        .then(() => handled)
        .then(
          () => capture.flush(),
          (error: unknown) => capture.flush(error),
        );
    };
    handled = handle(streaming);
    handled.then(resolve, reject);
  });
}

/**
 * Make any `(Request) => Promise<Response>` handler idempotent: Deno.serve, Bun.serve, Workers,
 * Next.js route handlers, or anything else built on Web `Request`/`Response`. The handler gets the
 * request it was called with (its own class and fields, e.g. `cf` on Workers or a `NextRequest`),
 * body unread: idem reads a clone's. A streamed response reaches the client as it is written.
 */
export function withIdempotency(
  handler: WebHandler,
  options: HttpIdempotencyOptions,
): (request: Request) => Promise<Response> {
  const layer = createIdempotencyHandler(options);
  return async (request) => {
    if (!layer.covers(request.method)) return handler(request, null);
    const http = new WebHttpRequest(request, true);
    let sent: Response | undefined;
    const outcome = await handleOrStream((streaming) =>
      layer.handle(http, async (context) => {
        const capture = await captureWebResponse(await handler(request, context), layer.maxResponseBytes);
        sent = capture.response;
        if (capture.streaming) streaming(capture);
        return capture.captured;
      }),
    );
    if ('streaming' in outcome) return outcome.response;
    if (outcome.action === 'respond') return toWebResponse(outcome.response);
    if (outcome.action === 'next') return handler(request, null);
    return sent!;
  };
}

/** `response` with another body; `lightweight`: @hono/node-server's, whose `statusText` builds a Response. */
function rebuild(response: Response, body: ResponseBody, lightweight: boolean): Response {
  const { status, headers } = response;
  return new Response(
    body,
    lightweight ? { status, headers } : { status, headers, statusText: response.statusText },
  );
}

/** One chunk as it is (the reader's own), several joined. */
function concat(chunks: Uint8Array[], length: number): Uint8Array {
  return chunks.length === 1 ? chunks[0]! : concatBytes(chunks, length);
}
