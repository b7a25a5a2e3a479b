import { vi } from 'vitest';
import type { FetchLike } from './idempotent-fetch.js';

/**
 * One scripted answer of the fake server: a response, a thrown error (a lost response), a function of
 * the request, or `'hang'` (no answer until the request's signal aborts).
 */
export type Step = Response | Error | ((request: Request) => Response | Promise<Response>) | 'hang';

/** What the fake server saw of one attempt. */
export interface SeenRequest {
  /** The request method. */
  method: string;
  /** The request URL. */
  url: string;
  /** The `Idempotency-Key` header, or `null` when the attempt had none. */
  key: string | null;
  /** All request headers. */
  headers: Headers;
  /** The body bytes the attempt sent (empty when none). */
  body: Uint8Array;
  /** The attempt's abort signal. */
  signal: AbortSignal;
}

/**
 * A base fetch test double (used by the unit tests only): answers each call with the next step of the
 * script and records every request it saw, keys and body bytes included.
 */
export function scriptedFetch(...steps: Step[]): { fetch: FetchLike; seen: SeenRequest[] } {
  const seen: SeenRequest[] = [];
  const fetch: FetchLike = async (input, init) => {
    const request = new Request(input, init);
    const body = new Uint8Array(await request.arrayBuffer());
    const { method, url, headers, signal } = request;
    seen.push({ method, url, key: headers.get('idempotency-key'), headers, body, signal });
    const step = steps.shift();
    if (step === undefined) throw new Error('scripted fetch: the script has no step left');
    if (step instanceof Error) throw step;
    if (step === 'hang') {
      return new Promise<Response>((_, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }
    return typeof step === 'function' ? step(request) : step;
  };
  return { fetch, seen };
}

/** A response with `status`, `headers` and a short text body. */
export function answer(status: number, headers: Record<string, string> = {}): Response {
  return new Response(status === 204 ? null : `status ${status}`, { status, headers });
}

/** A network error as undici reports one. */
export function networkError(): TypeError {
  return new TypeError('fetch failed', { cause: new Error('other side closed') });
}

/** Fake only the clock and timeouts: the fetch machinery keeps its real microtasks and immediates. */
export function useFakeClock(): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: new Date('2030-01-01T00:00:00Z') });
}

/** Let real I/O callbacks and promise chains run, without moving the fake clock. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Move the fake clock by `ms`, then flush. */
export async function tick(ms: number): Promise<void> {
  await flush();
  await vi.advanceTimersByTimeAsync(ms);
  await flush();
}

/** Run the fake clock, timer by timer, until `promise` settles; then settle like it. */
export async function drive<T>(promise: Promise<T>): Promise<T> {
  let done = false;
  const watched = promise.finally(() => {
    done = true;
  });
  // Handled below by returning `watched`; this only keeps the rejection from counting as unhandled.
  watched.catch(() => {});
  for (let round = 0; !done && round < 1000; round++) {
    await flush();
    if (!done) await vi.advanceTimersToNextTimerAsync();
  }
  if (!done) throw new Error('drive: the promise never settled');
  return watched;
}
