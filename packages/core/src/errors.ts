/** Every error idem reports, by code. */
export type IdempotencyErrorCode =
  /** The request needs an `Idempotency-Key` and has none. */
  | 'key_missing'
  /** The key is malformed: empty, too long, not visible ASCII, or badly quoted. */
  | 'key_invalid'
  /** The key was used before with a different payload. */
  | 'key_mismatch'
  /** Another request with this key is still running. */
  | 'in_flight'
  /** The store failed or timed out before the work ran. */
  | 'store_unavailable'
  /** The request body is larger than allowed. */
  | 'request_too_large'
  /** The original response was too large (or streamed) to be stored; it is not replayed. */
  | 'response_not_stored'
  /** A stored record could not be decoded. */
  | 'record_corrupt'
  /** The work's stored result could not be serialised or deserialised. */
  | 'result_invalid';

/** Extra facts some errors carry. */
export interface IdempotencyErrorDetails {
  /** Seconds after which a retry makes sense (`in_flight`, `store_unavailable`). */
  retryAfterSeconds?: number;
  /** The store involved, by name. */
  store?: string;
  /** The storage key involved (a hash, never the client's raw key). */
  key?: string;
  /** Why a response was not stored (`response_not_stored`). */
  reason?: string;
}

/**
 * Marks idem's errors whatever copy of this module made them: a process that loads core both as ESM
 * and as CommonJS (one package imports it, another requires it) has two `IdempotencyError` classes.
 */
const BRAND: unique symbol = Symbol.for('@idem/core/IdempotencyError');

/**
 * The one error class idem throws. Check `code`; `cause` keeps the underlying error. `instanceof` and
 * {@link isIdempotencyError} recognise an error of another copy of `@idem/core` too (its ESM and
 * CommonJS builds loaded side by side).
 */
export class IdempotencyError extends Error {
  /** Always `'IdempotencyError'`. */
  override readonly name = 'IdempotencyError';
  /** What went wrong; the field to branch on. */
  readonly code: IdempotencyErrorCode;
  /** Extra facts about this occurrence (`{}` when there are none). */
  readonly details: IdempotencyErrorDetails;

  /** `message` is prefixed with `[idem] `; `options.cause` becomes the standard `cause`. */
  constructor(
    code: IdempotencyErrorCode,
    message: string,
    options: { cause?: unknown; details?: IdempotencyErrorDetails } = {},
  ) {
    super(`[idem] ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  /** The brand, on the prototype. */
  get [BRAND](): true {
    return true;
  }

  /** `instanceof` by brand, not by class: see {@link IdempotencyError}. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
  }
}

/** Whether `value` is an `IdempotencyError`, optionally with one of `codes`. */
export function isIdempotencyError(
  value: unknown,
  ...codes: IdempotencyErrorCode[]
): value is IdempotencyError {
  return value instanceof IdempotencyError && (codes.length === 0 || codes.includes(value.code));
}

/** An RFC 9457 problem object. */
export interface ProblemDetails {
  /** Stable URI of the problem type: `https://idem.dev/problems/` + the code, dashed (`key-mismatch`). */
  type: string;
  /** Short summary of the problem type; the same for every occurrence of a code. */
  title: string;
  /** The HTTP status of the response, repeated in the body. */
  status: number;
  /**
   * What went wrong in this occurrence: the error's message without its `[idem]` prefix; for the 5xx
   * codes a fixed sentence instead (their messages name the store, the storage key or an encryption
   * key id: the operator's business, given to `onEvent` and kept on the thrown error, not the client's).
   */
  detail: string;
  /** idem's error code; the field to branch on. */
  code: IdempotencyErrorCode;
  /** Extensions: `retryAfter` (seconds) and `reason` (why the response was not stored), when set. */
  [extension: string]: unknown;
}

const PROBLEM_BASE = 'https://idem.dev/problems/';

const problems: Record<IdempotencyErrorCode, { status: number; title: string; detail?: string }> = {
  key_missing: { status: 400, title: 'Idempotency-Key is missing' },
  key_invalid: { status: 400, title: 'Idempotency-Key is invalid' },
  key_mismatch: { status: 422, title: 'Idempotency-Key reused with a different request' },
  in_flight: { status: 409, title: 'A request with this Idempotency-Key is in progress' },
  store_unavailable: {
    status: 503,
    title: 'Idempotency store unavailable',
    detail: 'the idempotency store failed or did not answer in time; the request did not run, retry later',
  },
  request_too_large: { status: 413, title: 'Request body too large' },
  response_not_stored: { status: 410, title: 'The original response was not stored' },
  record_corrupt: {
    status: 500,
    title: 'Stored idempotency record is corrupt',
    detail: 'the stored record of this Idempotency-Key cannot be read; the request did not run',
  },
  result_invalid: {
    status: 500,
    title: 'Stored result is invalid',
    detail: 'the result of this operation could not be stored or read back',
  },
};

/** The HTTP status of an error code. */
export function statusForCode(code: IdempotencyErrorCode): number {
  return problems[code].status;
}

/** The stable problem `type` URI of an error code. */
export function problemTypeForCode(code: IdempotencyErrorCode): string {
  return PROBLEM_BASE + code.replaceAll('_', '-');
}

/**
 * The HTTP answer for an error: status, RFC 9457 problem body and extra headers (`Retry-After`).
 * Every binding uses this, so all frameworks answer alike.
 */
export function problemFor(error: IdempotencyError): {
  status: number;
  headers: Record<string, string>;
  problem: ProblemDetails;
} {
  const { status, title, detail } = problems[error.code];
  const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
  const problem: ProblemDetails = {
    type: problemTypeForCode(error.code),
    title,
    status,
    detail: detail ?? error.message.replace(/^\[idem\] /, ''),
    code: error.code,
  };
  const retryAfter = error.details.retryAfterSeconds;
  if (retryAfter !== undefined) {
    headers['retry-after'] = String(retryAfter);
    problem['retryAfter'] = retryAfter;
  }
  if (error.details.reason !== undefined) problem['reason'] = error.details.reason;
  return { status, headers, problem };
}
