import { ensureOk } from './problem-error.js';
import { prepareBody } from './replayable-body.js';
import { recordRetryInfo } from './retry-info.js';
import {
  backoffDelay,
  DEFAULT_IDEMPOTENT_METHODS,
  DEFAULT_KEY_METHODS,
  isReplayed,
  isRetryableResponse,
  parseRetryAfter,
} from './retry-policy.js';

/** Anything with the shape of `fetch`: the global one, undici's, node-fetch, a test double. */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** What `onRetry` is told before each wait. */
export interface RetryEvent {
  /** The attempt that just failed (1 for the first). */
  attempt: number;
  /** How long the client waits before the next attempt, in ms. */
  delayMs: number;
  /** The request method, upper-case. */
  method: string;
  /** The request URL: a `Request`'s `url`, else the input as given, stringified. */
  url: string;
  /** The key the next attempt carries again, or `undefined` for an unkeyed request. */
  idempotencyKey: string | undefined;
  /** The retryable response (`409`, `429`, `5xx`), when there was one; its body is discarded. */
  response?: Response;
  /** The network error or `TimeoutError` of the attempt, when it got no response. */
  error?: unknown;
}

/** Options of {@link createIdempotentFetch}. */
export interface IdempotentFetchOptions {
  /** The fetch to wrap. Default: `globalThis.fetch`, looked up at call time. */
  fetch?: FetchLike | undefined;
  /** Methods that get a fresh `Idempotency-Key` when the caller set none. Default `['POST', 'PATCH']`. */
  keyMethods?: readonly string[] | undefined;
  /**
   * Methods retried without a key (idempotent by HTTP's definition). Default
   * `['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']`; `[]` retries only keyed requests.
   */
  idempotentMethods?: readonly string[] | undefined;
  /** Makes the key of one logical call. Default `crypto.randomUUID()`. */
  generateKey?: (() => string) | undefined;
  /** Attempts per call, the first one included. Default 4. */
  maxAttempts?: number | undefined;
  /**
   * Time budget of the whole call in ms, from the call (buffering a stream body included) until the final
   * response's headers: a body read or an attempt still waiting then is aborted with a `TimeoutError`, and
   * no retry is made whose wait would end after it. Any length is honoured, also beyond the 2^31-1 ms one
   * timer can hold; `Infinity` for none. Default 30 000.
   */
  deadlineMs?: number | undefined;
  /** How long one attempt may wait for response headers, in ms; then it is aborted and retried. Default: none. */
  attemptTimeoutMs?: number | undefined;
  /** Backoff scale: the n-th retry waits a random time below `min(maxDelayMs, baseDelayMs * 2^(n-1))`. Default 250. */
  baseDelayMs?: number | undefined;
  /** Longest backoff wait, in ms (a `Retry-After` may ask for longer, within the deadline). Default 10 000. */
  maxDelayMs?: number | undefined;
  /** Buffer one-shot stream bodies so that they can be retried. Default `true`; `false` sends them once, never retried. */
  bufferStreams?: boolean | undefined;
  /** Largest stream body buffered, in bytes; a longer one fails with `request_too_large`. Default 10 MiB. */
  maxBufferBytes?: number | undefined;
  /** Reject with a `ProblemError` when the final response has status >= 400, instead of resolving with it. Default `false`. */
  throwOnProblem?: boolean | undefined;
  /** Called before each wait (logs, metrics). Errors it throws are ignored. */
  onRetry?: ((event: RetryEvent) => void) | undefined;
  /** Uniform random number in `[0, 1)` for the jitter. Default `Math.random`. */
  random?: (() => number) | undefined;
}

/** The fetch-shaped function {@link createIdempotentFetch} returns. */
export type IdempotentFetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

const KEY_HEADER = 'idempotency-key';

/**
 * Wrap a fetch so that it retries safely: a request of a key method gets one `Idempotency-Key` per
 * call, the same on every retry; network errors, timeouts, `409` (keyed), `429` and `5xx` are retried
 * with exponential backoff and full jitter, honouring `Retry-After`; every other response, and every
 * replay (`Idempotent-Replayed: true`) whatever its status, is returned at once. Resolves with the final
 * response, like fetch (see `throwOnProblem` and `ensureOk` for errors).
 */
export function createIdempotentFetch(options: IdempotentFetchOptions = {}): IdempotentFetch {
  const base: FetchLike = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const keyMethods = new Set(options.keyMethods ?? DEFAULT_KEY_METHODS);
  const idempotentMethods = new Set(options.idempotentMethods ?? DEFAULT_IDEMPOTENT_METHODS);
  const generateKey = options.generateKey ?? (() => crypto.randomUUID());
  const maxAttempts = options.maxAttempts ?? 4;
  const deadlineMs = duration('deadlineMs', options.deadlineMs ?? 30_000, true);
  const attemptTimeoutMs = duration(
    'attemptTimeoutMs',
    options.attemptTimeoutMs ?? Number.POSITIVE_INFINITY,
    true,
  );
  const baseDelayMs = duration('baseDelayMs', options.baseDelayMs ?? 250, false);
  const maxDelayMs = duration('maxDelayMs', options.maxDelayMs ?? 10_000, false);
  const random = options.random ?? Math.random;
  const bodyOptions = {
    bufferStreams: options.bufferStreams ?? true,
    maxBufferBytes: duration('maxBufferBytes', options.maxBufferBytes ?? 10 * 1024 * 1024, false),
  };
  if (!(maxAttempts >= 1)) throw new TypeError('[idem] [fetch] maxAttempts must be at least 1');

  return async function idempotentFetch(input, init) {
    const deadline = Date.now() + deadlineMs;
    // A Request is the template of every attempt; its body, a stream, is read once like any stream.
    const template = input instanceof Request ? (init ? new Request(input, init) : input) : undefined;
    const signal = init?.signal ?? template?.signal ?? undefined;
    signal?.throwIfAborted();
    const method = (template?.method ?? init?.method ?? 'GET').toUpperCase();
    const url = template?.url ?? String(input);
    const headers = new Headers(template ? template.headers : init?.headers);
    // Buffering a stream body is part of the call: it stops on abort and counts against the deadline.
    const prepared = await prepareBody(template ? template.body : init?.body, {
      ...bodyOptions,
      startReading: () =>
        startTimer(
          signal,
          deadline - Date.now(),
          `the request body stream was still being read at the deadline (deadlineMs: ${deadlineMs})`,
        ),
    });
    if (prepared.contentType && !headers.has('content-type'))
      headers.set('content-type', prepared.contentType);
    if (!headers.has(KEY_HEADER) && keyMethods.has(method)) headers.set(KEY_HEADER, generateKey());
    const idempotencyKey = headers.get(KEY_HEADER) ?? undefined;
    const retries = prepared.replayable && (idempotencyKey !== undefined || idempotentMethods.has(method));

    const send = (attemptSignal: AbortSignal): Promise<Response> => {
      // A Request's unbuffered stream stays in the template, which hands it on once.
      const body =
        prepared.body === null || (template && !prepared.replayable) ? {} : { body: prepared.body };
      // Node's fetch insists on `duplex` for a stream body; it is not in TypeScript's RequestInit yet.
      const duplex = prepared.replayable ? {} : ({ duplex: 'half' } as RequestInit);
      const attemptInit: RequestInit = { headers, signal: attemptSignal, ...body, ...duplex };
      return template ? base(new Request(template, attemptInit)) : base(input, { ...init, ...attemptInit });
    };

    for (let attempt = 1; ; attempt++) {
      const timeoutMs = Math.min(attemptTimeoutMs, deadline - Date.now());
      const timer = startTimer(signal, timeoutMs, `no response within ${timeoutMs} ms`);
      let response: Response | undefined;
      let error: unknown;
      try {
        response = await send(timer.signal);
      } catch (thrown) {
        if (signal?.aborted) throw signal.reason;
        error = timer.timedOut() ? timer.signal.reason : thrown;
      } finally {
        timer.clear();
      }
      const info = { attempts: attempt, idempotencyKey };
      const retryAfter = response ? parseRetryAfter(response.headers.get('retry-after')) : undefined;
      const delayMs = retryAfter ?? backoffDelay(attempt, baseDelayMs, maxDelayMs, random());
      const again =
        retries &&
        attempt < maxAttempts &&
        (response === undefined || isRetryableResponse(response, idempotencyKey !== undefined)) &&
        Date.now() + delayMs < deadline;

      if (!again && response) {
        const replayed = isReplayed(response);
        recordRetryInfo(response, { ...info, replayed });
        if (!options.throwOnProblem) return response;
        return ensureOk(response).catch((problem: unknown) => {
          recordRetryInfo(problem, { ...info, replayed });
          throw problem;
        });
      }
      if (!again) {
        recordRetryInfo(error, { ...info, replayed: false });
        throw error;
      }
      // Frees the connection of a response nobody will read.
      response?.body?.cancel().catch(() => {});
      try {
        const event = { attempt, delayMs, method, url, idempotencyKey };
        options.onRetry?.(response ? { ...event, response } : { ...event, error });
      } catch {
        // a logging hook must not change what the request does
      }
      await sleep(delayMs, signal);
    }
  };
}

/**
 * A numeric option, refused at once when it is not a number of at least 0 (`NaN` from an unset
 * environment variable would otherwise turn every comparison false: no deadline, no wait). `bound`:
 * a limit, which must be positive and may be `Infinity`; otherwise a finite amount.
 */
function duration(name: string, value: number, bound: boolean): number {
  const valid = bound ? value > 0 : value >= 0 && Number.isFinite(value);
  if (!valid)
    throw new TypeError(
      `[idem] [fetch] ${name} must be ${bound ? 'a positive number (Infinity for none)' : 'a finite number of at least 0'}, got ${value}`,
    );
  return value;
}

/** `createIdempotentFetch()` over the global fetch, with the default options. */
export const idempotentFetch: IdempotentFetch = createIdempotentFetch();

/**
 * A signal for one step of the call (reading the body, one attempt): aborted by the caller's signal, or
 * after `timeoutMs` with a `TimeoutError` saying `message`.
 */
function startTimer(caller: AbortSignal | undefined, timeoutMs: number, message: string) {
  const timeout = new AbortController();
  const clear = setLongTimeout(
    () => timeout.abort(new DOMException(`[idem] [fetch] ${message}`, 'TimeoutError')),
    timeoutMs,
  );
  return {
    // Still linked to the caller's signal after the timer is cleared, so aborting also stops the body read.
    signal: caller ? anySignal(caller, timeout.signal) : timeout.signal,
    timedOut: () => timeout.signal.aborted,
    clear,
  };
}

// Node fires a timer of more than 2^31-1 ms (about 24.8 days) after 1 ms, browsers at once: a longer
// deadline or Retry-After would end every attempt or wait at once. Such delays are chained instead.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** `setTimeout` for any delay in ms, `Infinity` meaning never. Returns the function that cancels it. */
function setLongTimeout(callback: () => void, ms: number): () => void {
  let id: ReturnType<typeof setTimeout> | undefined;
  const arm = (left: number) => {
    id =
      left > MAX_TIMER_MS
        ? setTimeout(() => arm(left - MAX_TIMER_MS), MAX_TIMER_MS)
        : setTimeout(callback, Math.max(0, left));
  };
  if (ms < Number.POSITIVE_INFINITY) arm(ms);
  return () => clearTimeout(id);
}

function anySignal(a: AbortSignal, b: AbortSignal): AbortSignal {
  if (typeof AbortSignal.any === 'function') return AbortSignal.any([a, b]);
  // Node 20.0-20.2 lack AbortSignal.any.
  const controller = new AbortController();
  const abort = (from: AbortSignal) => () => controller.abort(from.reason);
  if (a.aborted || b.aborted) controller.abort((a.aborted ? a : b).reason);
  a.addEventListener('abort', abort(a), { once: true });
  b.addEventListener('abort', abort(b), { once: true });
  return controller.signal;
}

/** Wait `ms`, or reject at once with the signal's reason when it aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      cancel();
      reject(signal?.reason);
    };
    const cancel = setLongTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
