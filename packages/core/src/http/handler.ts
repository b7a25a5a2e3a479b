import { type EngineOptions, IdempotencyEngine } from '../engine.js';
import { IdempotencyError, isIdempotencyError, problemFor } from '../errors.js';
import { fingerprintNow } from '../fingerprint.js';
import { DEFAULT_KEY_PREFIX, storageKeyNow } from '../hash.js';
import { parseIdempotencyKey } from '../key.js';
import { recordCorrupt } from '../record-checks.js';
import type { StoredResponse } from '../store.js';
import { type StoredHeadersOptions, storedHeaderFilter } from './stored-headers.js';
import type {
  CapturedResponse,
  HandleResult,
  HttpRequest,
  HttpResponse,
  IdempotencyContext,
} from './types.js';

/** Options of the HTTP layer, shared by every binding. */
export interface HttpIdempotencyOptions extends EngineOptions {
  /** Methods idem applies to (upper-case). Default `['POST', 'PATCH']`; others pass through untouched. */
  methods?: readonly string[] | undefined;
  /** Refuse requests without a key with `400` (default `true`); when `false`, they pass through untouched. */
  required?: boolean | undefined;
  /** The key header's name. Default `Idempotency-Key`. */
  headerName?: string | undefined;
  /** Longest accepted key. Default 255. */
  maxKeyLength?: number | undefined;
  /**
   * Who is asking: the same key from two scopes is two operations, and a response is never replayed
   * to another scope. Default: the `Authorization` header (hashed into the storage key). Set it to
   * your tenant or user id.
   */
  scope?: ((request: HttpRequest) => string | Promise<string>) | undefined;
  /** Request headers (names) that are part of the fingerprint, besides method, path and body. */
  fingerprintHeaders?: readonly string[] | undefined;
  /** Replace the fingerprint entirely: what makes two requests with one key "the same request". */
  fingerprint?: ((request: HttpRequest, body: Uint8Array) => string | Promise<string>) | undefined;
  /** Request bodies above this many bytes get `413` before anything is claimed. Default 1 MiB. */
  maxRequestBytes?: number | undefined;
  /**
   * Response bodies above this many bytes go to the client untouched but are not stored; the record
   * completes without a body and a retry gets `410 response_not_stored`. Default 1 MiB.
   */
  maxResponseBytes?: number | undefined;
  /**
   * Which statuses are stored. Default 200-499 but 408 and 429; the others (5xx, and those two, which
   * ask the client to try again later) release the key so that a retry runs again.
   */
  storeStatus?: ((status: number) => boolean) | undefined;
  /** Which response headers are stored and replayed (Set-Cookie, hop-by-hop, Date, Content-Length never are). */
  storedHeaders?: StoredHeadersOptions | undefined;
  /** Prefix of storage keys. Default `"idem:"`. */
  prefix?: string | undefined;
}

/** The HTTP layer bindings call: one instance per middleware/plugin. */
export interface IdempotencyHandler {
  /** The `maxRequestBytes` in force, default applied: bindings read request bodies only up to it. */
  readonly maxRequestBytes: number;
  /** The `maxResponseBytes` in force, default applied: bindings keep response bodies only up to it. */
  readonly maxResponseBytes: number;
  /** The engine built from the options, shared by every request this handler decides. */
  readonly engine: IdempotencyEngine;
  /**
   * Decide and, when the request is idem's to run, run the route through `run` (which resolves with
   * the captured response, or rejects with the route's error after the record is released).
   * Never throws an `IdempotencyError`: those become a `respond` result with a problem response.
   */
  handle(
    request: HttpRequest,
    run: (context: IdempotencyContext) => Promise<CapturedResponse>,
  ): Promise<HandleResult>;
  /** Whether idem covers this method at all (bindings may skip reading anything when not). */
  covers(method: string): boolean;
}

const MiB = 1024 * 1024;
const encoder = new TextEncoder();

/**
 * 2xx-4xx, but 408 Request Timeout and 429 Too Many Requests: both say "not now, try again later";
 * stored, they would answer every retry with that for the whole ttl.
 */
function storedByDefault(status: number): boolean {
  return status >= 200 && status < 500 && status !== 408 && status !== 429;
}

/** Build the HTTP layer. Bindings wrap this; it holds all of idem's HTTP semantics. */
export function createIdempotencyHandler(options: HttpIdempotencyOptions): IdempotencyHandler {
  const engine = new IdempotencyEngine(options);
  const methods = new Set((options.methods ?? ['POST', 'PATCH']).map((method) => method.toUpperCase()));
  const required = options.required ?? true;
  const headerName = (options.headerName ?? 'Idempotency-Key').toLowerCase();
  const keyOptions = { maxKeyLength: options.maxKeyLength ?? 255 };
  const scopeOf = options.scope ?? ((request: HttpRequest) => request.header('authorization') ?? '');
  const fingerprintHeaders = (options.fingerprintHeaders ?? []).map((name) => name.toLowerCase());
  const maxRequestBytes = options.maxRequestBytes ?? MiB;
  const maxResponseBytes = options.maxResponseBytes ?? MiB;
  const storeStatus = options.storeStatus ?? storedByDefault;
  const filterHeaders = storedHeaderFilter(options.storedHeaders);
  const prefix = options.prefix ?? DEFAULT_KEY_PREFIX;

  const covers = (method: string) => methods.has(method.toUpperCase());

  const settle = (captured: CapturedResponse): StoredResponse | null => {
    if (!storeStatus(captured.status)) return null;
    const headers = filterHeaders(captured.headers);
    if (captured.body === null || captured.body.length > maxResponseBytes) {
      return {
        status: captured.status,
        headers,
        body: new Uint8Array(0),
        omitted: captured.omitted ?? 'too_large',
      };
    }
    return { status: captured.status, headers, body: captured.body };
  };

  const noHeaders: ReadonlyArray<readonly [string, string]> = [];
  const fingerprintOf = (request: HttpRequest, body: Uint8Array) =>
    options.fingerprint
      ? options.fingerprint(request, body)
      : fingerprintNow({
          method: request.method,
          path: request.path,
          body,
          contentType: request.header('content-type'),
          headers:
            fingerprintHeaders.length === 0
              ? noHeaders
              : fingerprintHeaders.map((name) => [name, request.header(name) ?? ''] as const),
        });

  async function handle(
    request: HttpRequest,
    run: (context: IdempotencyContext) => Promise<CapturedResponse>,
  ): Promise<HandleResult> {
    if (!covers(request.method)) return { action: 'next' };
    let replay: StoredResponse | null = null;
    let storage = '';
    try {
      const header = request.header(headerName);
      if ((header === null || header === undefined) && !required) return { action: 'next' };
      const key = parseIdempotencyKey(header, keyOptions);
      const declared = Number(request.header('content-length') ?? 0);
      if (declared > maxRequestBytes) throw tooLarge(maxRequestBytes);
      // Each value below is awaited only when it is a promise: on Node everything but the store is
      // synchronous, and an await per step is a tick (and a promise) per step per request.
      const read = request.body(maxRequestBytes);
      const body = isThenable(read) ? await read : read;
      if (body.length > maxRequestBytes) throw tooLarge(maxRequestBytes);
      // Scope and fingerprint both start before either is awaited.
      const scoped = scopeOf(request);
      const printed = fingerprintOf(request, body);
      let scope: string;
      let print: string;
      if (typeof scoped === 'string') {
        scope = scoped;
        print = typeof printed === 'string' ? printed : await printed;
      } else {
        [scope, print] = await Promise.all([scoped, printed]);
      }
      const keyed = storageKeyNow(key, scope, prefix);
      storage = typeof keyed === 'string' ? keyed : await keyed;
      const result = await engine.run(
        { storageKey: storage, fingerprint: print },
        (operation) => run({ key, storageKey: storage, fingerprint: print, operation }),
        settle,
      );
      if (!result.replayed) return { action: 'done' };
      replay = result.response;
    } catch (error) {
      if (isIdempotencyError(error))
        return { action: 'respond', response: problemResponse(error), replayed: false };
      throw error;
    }
    if (replay.omitted) {
      const error = new IdempotencyError(
        'response_not_stored',
        `the original request succeeded with status ${replay.status}, but its response was not stored (${replay.omitted === 'streaming' ? 'it was streamed' : 'it was too large'}); it will not run again`,
        { details: { reason: replay.omitted } },
      );
      return { action: 'respond', response: problemResponse(error), replayed: true };
    }
    // Filtered again on the way out: a record the store holds may not have been written by this
    // handler (another version, another writer, a compromised store). Cookies and hop-by-hop headers are
    // never replayed, and a header no HTTP server may send is a corrupt record, not a crash.
    const headers = filterHeaders(replay.headers);
    if (!headers.every(([name, value]) => HEADER_NAME.test(name) && HEADER_VALUE.test(value))) {
      const error = recordCorrupt(
        engine.store.name,
        storage,
        'the stored response has a header that cannot be sent',
      );
      engine.reportCorrupt(storage, error);
      return { action: 'respond', response: problemResponse(error), replayed: false };
    }
    headers.push(['idempotent-replayed', 'true']);
    return {
      action: 'respond',
      replayed: true,
      response: { status: replay.status, headers, body: replay.body },
    };
  }

  return { handle, covers, engine, maxRequestBytes, maxResponseBytes };
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
// Visible ASCII, space, tab and obs-text, as RFC 9110 allows in a field value.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** idem's own answer for an error: an RFC 9457 problem response. Never stored. */
export function problemResponse(error: IdempotencyError): HttpResponse {
  const { status, headers, problem } = problemFor(error);
  return { status, headers: Object.entries(headers), body: encoder.encode(JSON.stringify(problem)) };
}

function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

function tooLarge(limit: number): IdempotencyError {
  return new IdempotencyError('request_too_large', `the request body is larger than ${limit} bytes`);
}
