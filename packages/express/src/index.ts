import {
  createIdempotencyHandler,
  type HttpIdempotencyOptions,
  type HttpRequest,
  type HttpResponse,
  type IdempotencyContext,
} from '@idem/core';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import { requestBody } from './request-body.js';
import { captureResponse, type ResponseCapture, ResponseClosedError } from './response-capture.js';

// What users need of the core (IdempotencyError, the option and context types), from one import.
export * from '@idem/core';

declare global {
  namespace Express {
    interface Request {
      /**
       * The idempotent operation this request runs under (key, storage key, fingerprint, fencing
       * token), set by `idempotency()`; `undefined` when idem does not cover the request.
       */
      idempotency?: IdempotencyContext;
    }
  }
}

/** Options of {@link idempotency}: those of the core HTTP layer, with `scope` given the Express request. */
export interface ExpressIdempotencyOptions extends Omit<HttpIdempotencyOptions, 'scope'> {
  /**
   * Who is asking: the same key from two scopes is two operations, and a response is never replayed
   * to another scope. Default: the `Authorization` header (hashed). Set it to your tenant or user id,
   * e.g. `(req) => req.user.id` (mount idem after your authentication middleware).
   */
  scope?: (req: Request) => string | Promise<string>;
}

/** An {@link HttpRequest} over an Express request (which `scope` gets back). */
function httpRequest(req: Request): HttpRequest & { req: Request } {
  return {
    req,
    method: req.method,
    path: req.originalUrl,
    header: (name) => {
      const value = req.headers[name.toLowerCase()];
      return Array.isArray(value) ? value.join(', ') : value;
    },
    body: (limit) => requestBody(req, limit),
  };
}

/** Requests whose route runs under idem, and how to fail that run when an error reaches the error handler. */
const running = new WeakMap<Request, (error: unknown, forward: NextFunction) => void>();

/**
 * Express (4 and 5) middleware that makes the routes after it idempotent: the first request with an
 * `Idempotency-Key` runs, retries get its stored response (`Idempotent-Replayed: true`), concurrent
 * duplicates get `409`, a reused key with another payload `422`. The route sees `req.idempotency`.
 *
 * Mount it before the routes, after authentication (for `scope`), before or after body parsers, and
 * {@link idempotencyErrorHandler} after the routes.
 */
export function idempotency(options: ExpressIdempotencyOptions): RequestHandler {
  const { scope, ...rest } = options;
  const layer = createIdempotencyHandler(
    scope ? { ...rest, scope: (request) => scope((request as ReturnType<typeof httpRequest>).req) } : rest,
  );
  return (req, res, next) => {
    if (!layer.covers(req.method)) return next();
    let capture: ResponseCapture | undefined;
    let failure: { error: unknown; next: NextFunction } | undefined;
    const run = (context: IdempotencyContext) => {
      req.idempotency = context;
      const current = captureResponse(res, layer.maxResponseBytes);
      capture = current;
      running.set(req, (error, errorNext) => {
        failure = { error, next: errorNext };
        current.fail(error);
      });
      next();
      return current.captured;
    };
    const settle = (then: () => void) => {
      running.delete(req);
      capture?.flush();
      // The record is completed or released by now: the route's error goes on to the next error handler.
      if (failure) failure.next(failure.error);
      else then();
    };
    // Express 4 does not catch rejected promises: every failure goes to next() explicitly.
    layer.handle(httpRequest(req), run).then(
      (result) =>
        settle(() => {
          if (result.action === 'next') next();
          else if (result.action === 'respond') send(res, result.response);
        }),
      (error: unknown) =>
        settle(() => {
          if (!(error instanceof ResponseClosedError)) next(error);
        }),
    );
  };
}

/**
 * The error handler that tells idem a route failed, so that its key is released (a retry runs again)
 * whatever status the error response gets. Mount it after your routes and before your own error
 * handlers; it passes every error on, after the release. Without it, a failed route is judged by the
 * status of the error response (`storeStatus`: 5xx releases by default).
 */
export function idempotencyErrorHandler(): ErrorRequestHandler {
  return (error, req, _res, next) => {
    const fail = running.get(req);
    if (fail) fail(error, next);
    else next(error);
  };
}

/** Send idem's own answer (a replay or a problem), replacing headers earlier middleware set. */
function send(res: Response, response: HttpResponse): void {
  if (res.headersSent) return;
  const headers = new Map<string, string[]>();
  for (const [name, value] of response.headers) headers.set(name, [...(headers.get(name) ?? []), value]);
  res.statusCode = response.status;
  for (const [name, values] of headers) res.setHeader(name, values.length === 1 ? values[0]! : values);
  const { buffer, byteOffset, byteLength } = response.body;
  res.end(Buffer.from(buffer, byteOffset, byteLength));
}
