/**
 * The routes every binding under test serves, and the recorder the suite hands to the binding so that
 * it can count executions. Each binding implements the routes natively in its framework (its own body
 * parsing, its own way of setting headers, cookies and streams): that is what the suite checks.
 */

/** The routes of the test app, by the name their executions are counted under. */
export type TestRoute =
  | 'orders'
  | 'binary'
  | 'slow'
  | 'fail'
  | 'throw'
  | 'big'
  | 'stream'
  | 'chunks'
  | 'get'
  | 'context';

/** The server a binding started for the suite. */
export interface TestServer {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** Stop listening and drop open (keep-alive) connections. */
  close(): Promise<void>;
}

/**
 * Handed by the suite to `start`: the routes call it, the suite reads it. One per started server.
 */
export interface TestApp {
  /** Count one execution of `route` and return the route's count on this server so far (1, 2, ...). */
  record(route: TestRoute): number;
  /** How many times `route` ran on this server. */
  executions(route: TestRoute): number;
  /** For `POST /fail`: `true` the first time it is asked for a key (answer 500), `false` afterwards. */
  firstFailure(key: string): boolean;
  /** For `POST /big`: the body of `bytes` bytes to answer (a fixed pattern over all byte values). */
  bigBody(bytes: number): Uint8Array;
  /** For `POST /stream`: the events to write, one chunk each, in order (about 10 ms apart). */
  readonly streamEvents: readonly string[];
  /** For `POST /chunks`: the NDJSON lines to write, one chunk each, in order, `chunkIntervalMs` apart. */
  readonly streamChunks: readonly string[];
  /** For `POST /chunks`: the pause after each chunk (ms). */
  readonly chunkIntervalMs: number;
  /** For `POST /throw`: the message of the error to throw. */
  readonly throwMessage: string;
}

/** The bytes `TestApp.bigBody(bytes)` answers. */
export function bigBody(bytes: number): Uint8Array {
  const body = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) body[i] = (i * 31 + (i >> 10)) & 0xff;
  return body;
}

/** The events of `POST /stream`. */
export const STREAM_EVENTS: readonly string[] = Object.freeze([
  'event: order\ndata: {"step":1}\n\n',
  'event: order\ndata: {"step":2}\n\n',
  'event: order\ndata: {"step":3}\n\n',
]);

/** The lines of `POST /chunks` (NDJSON, `application/x-ndjson`): a stream that is not an event stream. */
export const STREAM_CHUNKS: readonly string[] = Object.freeze(
  Array.from({ length: 5 }, (_, i) => `{"token":${i + 1},"text":"part ${i + 1}"}\n`),
);

/** The pause after each chunk of `POST /chunks`. */
export const CHUNK_INTERVAL_MS = 150;

/** Creates a fresh recorder (the suite does this for every `start`; bindings rarely need it). */
export function createTestApp(): TestApp {
  const counts = new Map<TestRoute, number>();
  const failed = new Set<string>();
  return {
    record(route) {
      const next = (counts.get(route) ?? 0) + 1;
      counts.set(route, next);
      return next;
    },
    executions: (route) => counts.get(route) ?? 0,
    firstFailure(key) {
      if (failed.has(key)) return false;
      failed.add(key);
      return true;
    },
    bigBody,
    streamEvents: STREAM_EVENTS,
    streamChunks: STREAM_CHUNKS,
    chunkIntervalMs: CHUNK_INTERVAL_MS,
    throwMessage: 'the route failed on purpose',
  };
}
