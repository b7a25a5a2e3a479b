import type { IdempotencyErrorCode, ProblemDetails } from '@idem/core';

/** An RFC 9457 problem object as a server sent it (fields unchecked, all optional). */
export interface Problem {
  /** URI identifying the problem type; absent means `about:blank` (RFC 9457). */
  type?: string;
  /** Short summary of the problem type. */
  title?: string;
  /** The HTTP status, as the server repeated it in the body (`ProblemError.status` is the response's). */
  status?: number;
  /** What went wrong in this occurrence. */
  detail?: string;
  /** URI identifying this occurrence. */
  instance?: string;
  /** Extension members; idem's own problems add `code`, and `retryAfter` or `reason` where they apply. */
  [extension: string]: unknown;
}

// Typed against core's union, so that a code added there fails to compile here until it is listed.
const IDEM_CODES: Record<IdempotencyErrorCode, true> = {
  key_missing: true,
  key_invalid: true,
  key_mismatch: true,
  in_flight: true,
  store_unavailable: true,
  request_too_large: true,
  response_not_stored: true,
  record_corrupt: true,
  result_invalid: true,
};

/** Marks a `ProblemError` whatever copy of this module made it (the package's ESM and CommonJS builds). */
const BRAND: unique symbol = Symbol.for('@idem/fetch/ProblemError');

/**
 * A final response that is not ok (status >= 400), as an error. Thrown by `ensureOk(response)` and,
 * with the `throwOnProblem` option, by the idempotent fetch itself. `instanceof` and
 * {@link isProblemError} recognise one made by another copy of `@idem/fetch` too (its ESM and CommonJS
 * builds loaded side by side).
 */
export class ProblemError extends Error {
  /** Always `'ProblemError'`. */
  override readonly name = 'ProblemError';
  /** The HTTP status. */
  readonly status: number;
  /** The response; its body is still unread (the problem was parsed from a clone). */
  readonly response: Response;
  /** The parsed body when it is `application/problem+json`, else `undefined`. */
  readonly problem: Problem | undefined;
  /** idem's error code when the server is idem and said which (`problem` is then a core `ProblemDetails`). */
  readonly code: IdempotencyErrorCode | undefined;

  /** An error for `response`, with `problem` its parsed body (or `undefined` when it has none). */
  constructor(response: Response, problem: Problem | undefined) {
    const what = problem?.title ?? response.statusText;
    const detail = problem?.detail ? `: ${problem.detail}` : '';
    super(
      `[idem] [fetch] ${response.status}${what ? ` ${what}` : ''}${detail} (${response.url || 'request'})`,
    );
    this.status = response.status;
    this.response = response;
    this.problem = problem;
    const code = problem?.['code'];
    this.code =
      typeof code === 'string' && Object.hasOwn(IDEM_CODES, code)
        ? (code as IdempotencyErrorCode)
        : undefined;
  }

  /** idem's own problem, typed as core's `ProblemDetails`, when `code` is set. */
  get idemProblem(): ProblemDetails | undefined {
    return this.code === undefined ? undefined : (this.problem as ProblemDetails);
  }

  /** The brand, on the prototype. */
  get [BRAND](): true {
    return true;
  }

  /** `instanceof` by brand, not by class: see {@link ProblemError}. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
  }
}

/** Whether `value` is a `ProblemError`, optionally with one of idem's `codes`. */
export function isProblemError(value: unknown, ...codes: IdempotencyErrorCode[]): value is ProblemError {
  return (
    value instanceof ProblemError &&
    (codes.length === 0 || (value.code !== undefined && codes.includes(value.code)))
  );
}

/**
 * Resolve with `response` when it is ok (or a redirect), reject with a {@link ProblemError} carrying
 * the parsed problem otherwise. Made for `.then`: `await idempotentFetch(url, init).then(ensureOk)`.
 */
export async function ensureOk(response: Response): Promise<Response> {
  if (response.status < 400) return response;
  throw new ProblemError(response, await parseProblem(response));
}

async function parseProblem(response: Response): Promise<Problem | undefined> {
  const type = response.headers.get('content-type') ?? '';
  if (!/^application\/problem\+json\b/i.test(type.trim())) return undefined;
  try {
    const body: unknown = await response.clone().json();
    return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Problem) : undefined;
  } catch {
    return undefined;
  }
}
