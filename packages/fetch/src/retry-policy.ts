/** Methods that get an `Idempotency-Key` by default. */
export const DEFAULT_KEY_METHODS: readonly string[] = ['POST', 'PATCH'];

/** Methods retried without a key by default: idempotent by HTTP's definition (RFC 9110 §9.2.2). */
export const DEFAULT_IDEMPOTENT_METHODS: readonly string[] = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'];

/**
 * Whether a response status is worth another attempt. `409` counts only for a keyed request, where it
 * means "the original is still in flight"; elsewhere it is a real conflict. `429` and `5xx` mean the
 * server did not (or did not finish to) process the request, and idem released the key for them.
 * A replay is never retried, whatever its status: see {@link isRetryableResponse}.
 */
export function isRetryableStatus(status: number, keyed: boolean): boolean {
  return (status === 409 && keyed) || status === 429 || (status >= 500 && status <= 599);
}

/**
 * Whether a response is a replay (`Idempotent-Replayed: true`): the stored outcome of an earlier
 * attempt of the same key, not a fresh answer.
 */
export function isReplayed(response: Response): boolean {
  return response.headers.get('idempotent-replayed') === 'true';
}

/**
 * Whether a response is worth another attempt. Never a replay: it is the stored outcome of the operation
 * (a `429` or `5xx` a server chose to store) and every retry would get it again
 * until the server forgets the key. Otherwise as {@link isRetryableStatus} says.
 */
export function isRetryableResponse(response: Response, keyed: boolean): boolean {
  return !isReplayed(response) && isRetryableStatus(response.status, keyed);
}

/**
 * Parse a `Retry-After` header (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
 *
 * @returns the delay in ms (a date in the past gives `0`), or `undefined` when absent or malformed.
 */
export function parseRetryAfter(
  value: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  // Date.parse would take "1.5" or "-1" as dates; an HTTP-date always names a weekday or month.
  if (!/[a-z]/i.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Exponential backoff with full jitter: a uniform delay in `[0, min(maxDelayMs, baseDelayMs * 2^(retry-1)))`.
 * Full jitter spreads the retries of many clients hit by the same outage instead of synchronising them.
 *
 * @param retry 1 for the first retry, 2 for the second, ...
 * @param random a uniform number in `[0, 1)`, e.g. `Math.random()`.
 */
export function backoffDelay(retry: number, baseDelayMs: number, maxDelayMs: number, random: number): number {
  return random * Math.min(maxDelayMs, baseDelayMs * 2 ** (retry - 1));
}
