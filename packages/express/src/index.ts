import {
  type CapturedResponse,
  createIdempotencyHandler,
  type HttpIdempotencyOptions,
  type HttpRequest,
  type HttpResponse,
  type IdempotencyContext,
} from '@idem/core';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import { requestBody } from './request-body.js';
import { captureResponse, type ResponseCapture } from './response-capture.js';

// What users need of the core (its error, the option, context and event types), from one import.
export {
  type HttpIdempotencyOptions,
  type IdempotencyContext,
  IdempotencyError,
  type IdempotencyErrorCode,
  type IdempotencyEvent,
  isIdempotencyError,
  type Operation,
  type ProblemDetails,
  type Store,
  type StoredHeadersOptions,
} from '@idem/core';

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
  scope?: ((req: Request) => string | Promise<string>) | undefined;
}

/** An {@link HttpRequest} over an Express request (which `scope` gets back). */
class ExpressHttpRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;

  constructor(readonly req: Request) {
    this.method = req.method;
    this.path = req.originalUrl;
  }

  header(name: string): string | undefined {
    const value = this.req.headers[name.toLowerCase()];
    return Array.isArray(value) ? value.join(', ') : value;
  }

  body(limit: number): Promise<Uint8Array> {
    return requestBody(this.req, limit);
  }
}

/**
 * Requests whose route runs under idem, and how to fail that run when an error reaches the error
 * handler. Not a property of the request: Express changes the prototype of every request, after which
 * each property added to one costs microseconds (a new hidden class).
 */
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
    scope ? { ...rest, scope: (request) => scope((request as ExpressHttpRequest).req) } : rest,
  );
  return (req, res, next) => {
    if (!layer.covers(req.method)) return next();
    const run = new RouteRun(req, res, next, layer.maxResponseBytes);
    // Express 4 does not catch rejected promises: every failure goes to next() explicitly.
    layer
      .handle(new ExpressHttpRequest(req), (context) => run.start(context))
      .then(
        (result) => {
          if (run.settled()) return;
          if (result.action === 'next') next();
          else if (result.action === 'respond') {
            try {
              send(res, result.response);
            } catch (error) {
              next(error);
            }
          }
        },
        (error: unknown) => {
          if (!run.settled()) next(error);
        },
      );
  };
}

/** The route's run under idem, for one request (a class: one is built per request). */
class RouteRun {
  private capture: ResponseCapture | undefined;
  private failure: { error: unknown; next: NextFunction } | undefined;

  constructor(
    private readonly req: Request,
    private readonly res: Response,
    private readonly next: NextFunction,
    private readonly maxResponseBytes: number,
  ) {}

  /** Run the route (the rest of the chain), capturing its response. */
  start(context: IdempotencyContext): Promise<CapturedResponse> {
    this.req.idempotency = context;
    const capture = captureResponse(this.res, this.maxResponseBytes);
    this.capture = capture;
    running.set(this.req, (error, errorNext) => {
      this.failure = { error, next: errorNext };
      capture.fail(error);
    });
    this.next();
    return capture.captured;
  }

  /**
   * The record is completed or released by now: let the held response through, and pass the route's
   * error on to the next error handler. True when there was such an error.
   */
  settled(): boolean {
    running.delete(this.req);
    this.capture?.flush();
    if (!this.failure) return false;
    this.failure.next(this.failure.error);
    return true;
  }
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
