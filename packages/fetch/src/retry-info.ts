/** How a call of an idempotent fetch went, read back with {@link retryInfo}. */
export interface RetryInfo {
  /** Attempts made, the first one included (`1` when there was no retry). */
  readonly attempts: number;
  /** The server answered with a stored response (`Idempotent-Replayed: true`): the work ran earlier. */
  readonly replayed: boolean;
  /** The `Idempotency-Key` every attempt carried, or `undefined` for an unkeyed request. */
  readonly idempotencyKey: string | undefined;
}

// A WeakMap rather than a property on the Response: the Response stays a plain, unmodified Response.
const infos = new WeakMap<object, RetryInfo>();

/**
 * The retry facts of a response returned (or an error thrown) by an idempotent fetch; `undefined` for
 * anything else, including a `response.clone()`.
 */
export function retryInfo(responseOrError: unknown): RetryInfo | undefined {
  return typeof responseOrError === 'object' && responseOrError !== null
    ? infos.get(responseOrError)
    : undefined;
}

/** Attach `info` to a response or error for {@link retryInfo} (internal: not exported by the package). */
export function recordRetryInfo(target: unknown, info: RetryInfo): void {
  if (typeof target === 'object' && target !== null) infos.set(target, info);
}
