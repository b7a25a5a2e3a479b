export {
  createIdempotentFetch,
  type FetchLike,
  type IdempotentFetch,
  type IdempotentFetchOptions,
  idempotentFetch,
  type RetryEvent,
} from './idempotent-fetch.js';
export { ensureOk, isProblemError, type Problem, ProblemError } from './problem-error.js';
export { type RetryInfo, retryInfo } from './retry-info.js';
export {
  backoffDelay,
  DEFAULT_IDEMPOTENT_METHODS,
  DEFAULT_KEY_METHODS,
  isRetryableResponse,
  isRetryableStatus,
  parseRetryAfter,
} from './retry-policy.js';
