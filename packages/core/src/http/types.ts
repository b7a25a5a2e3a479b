import type { Operation } from '../engine.js';
import type { OmittedBody } from '../store.js';

/** A request as the HTTP layer sees it, whatever the framework. Bindings build one per request. */
export interface HttpRequest {
  /** The method, any case. */
  method: string;
  /** Path and query string as the client sent them, e.g. `/orders?dry=1`. */
  path: string;
  /** A header's value by lower-case name (repeated headers joined with `, `), or null/undefined. */
  header(name: string): string | null | undefined;
  /**
   * The body bytes, read at most once and only for requests idem covers. Implementations should stop
   * reading past `limit` bytes and throw `IdempotencyError('request_too_large')`; the layer checks the
   * length as well. A binding that already holds the bytes may return them directly.
   */
  body(limit: number): Uint8Array | Promise<Uint8Array>;
}

/** A complete response: what idem answers itself (replays, problems). */
export interface HttpResponse {
  /** HTTP status code. */
  status: number;
  /** Header pairs to send, in order, repeated names as separate pairs; names lower-case. */
  headers: Array<[string, string]>;
  /** The whole body, byte-exact (empty when there is none). */
  body: Uint8Array;
}

/** The route's response as the binding captured it while (or after) sending it. */
export interface CapturedResponse {
  /** The HTTP status the route sent. */
  status: number;
  /**
   * Header pairs as the route sent them, in order, repeated names as separate pairs, names in any case.
   * idem filters them (see `storedHeaders`) before storing.
   */
  headers: ReadonlyArray<readonly [string, string]>;
  /** The whole body, or `null` when the binding did not keep it (see `omitted`). */
  body: Uint8Array | null;
  /** Why the body was not kept: larger than `maxResponseBytes`, or a stream the binding did not buffer. */
  omitted?: OmittedBody;
}

/** What the route handler can know about the idempotent operation it runs under. */
export interface IdempotencyContext {
  /** The client's key, unquoted. */
  key: string;
  /** The key the store sees (`prefix + hash(scope, key)`). */
  storageKey: string;
  /** The request's fingerprint. */
  fingerprint: string;
  /**
   * The running operation (fencing token, lease signal, `markCompleted` for stores that complete inside
   * the handler's own transaction). `claimed` is false when fail-open ran the handler without a claim.
   */
  operation: Operation;
}

/**
 * What a binding does with a request:
 * - `next`: idem does not cover it (method, or no key where keys are optional): run the route as usual.
 * - `respond`: idem answers itself (a replay, or a problem such as 409/422/400/503): send `response`.
 * - `done`: the route ran through `run`, and the binding already sent (or is sending) its response.
 */
export type HandleResult =
  | {
      /** idem does not cover the request: run the route as usual. */
      action: 'next';
    }
  | {
      /** idem answers itself: send `response`. */
      action: 'respond';
      /** The response to send: a replay, or a problem. */
      response: HttpResponse;
      /** Whether it answers for an earlier run (a replay, or that run's `410 response_not_stored`). */
      replayed: boolean;
    }
  | {
      /** The route ran through `run`; its response is sent or being sent. */
      action: 'done';
    };
