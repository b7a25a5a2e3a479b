import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { CapturedResponse, OmittedBody } from '@idem/core';

/** The route's response, captured while it is sent. */
export interface ResponseCapture {
  /**
   * Resolves when the route ends the response. A buffered body's final `end` is held back until
   * {@link ResponseCapture.flush}; a streamed or oversized body has already gone through by then.
   * Rejects with {@link ResponseClosedError} when the connection closed in the middle of the body.
   */
  readonly captured: Promise<CapturedResponse>;
  /** Let the held `end` through (after the record was completed or released). */
  flush(): void;
  /** The route failed (an error reached Express' error handling): reject `captured`, unless it ended. */
  fail(error: unknown): void;
}

/** The connection closed after the headers were sent and before the route ended the response. */
export class ResponseClosedError extends Error {
  constructor() {
    super('[express] the connection closed before the response was complete');
  }
}

type Method = (...args: unknown[]) => unknown;

/**
 * Hook `res.writeHead`, `res.write` and `res.end` (through which `res.send`, `res.json` and piped
 * streams go) to capture status, headers and up to `maxBytes` of body. Writes always go straight
 * through, so streaming keeps streaming; the headers are captured as they are when they are sent.
 */
export function captureResponse(res: ServerResponse, maxBytes: number): ResponseCapture {
  const writeHead = res.writeHead as Method;
  const write = res.write as Method;
  const end = res.end as Method;
  const chunks: Buffer[] = [];
  let length = 0;
  let head: { status: number; headers: Array<[string, string]> } | undefined;
  let omitted: OmittedBody | undefined;
  let done = false;
  let held: (() => void) | undefined;
  let settle!: (captured: CapturedResponse) => void;
  let abort!: (error: unknown) => void;
  const captured = new Promise<CapturedResponse>((resolve, reject) => {
    settle = resolve;
    abort = reject;
  });

  const snapshot = () => {
    if (head) return;
    head = { status: res.statusCode, headers: headerPairs(res.getHeaders()) };
    if (/^text\/event-stream/i.test(String(res.getHeader('content-type') ?? ''))) omitted = 'streaming';
    else if (Number(res.getHeader('content-length') ?? 0) > maxBytes) omitted = 'too_large';
  };
  const collect = (chunk: unknown, encoding: unknown) => {
    if (omitted || chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const bytes =
      typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' && Buffer.isEncoding(encoding) ? encoding : 'utf8')
        : Buffer.from(chunk as Uint8Array); // a copy: writers may reuse their buffers
    length += bytes.length;
    if (length > maxBytes) {
      omitted = 'too_large';
      chunks.length = 0;
    } else chunks.push(bytes);
  };
  const fail = (error: unknown) => {
    if (done) return;
    done = true;
    res.off('close', onClose);
    abort(error);
  };
  // Before any header, the route is still working (the client went away): wait for its end.
  const onClose = () => {
    if (res.headersSent) fail(new ResponseClosedError());
  };
  res.once('close', onClose);

  res.writeHead = function (this: ServerResponse, status: number, ...rest: unknown[]) {
    if (!done && !head) {
      const headers = typeof rest[0] === 'string' ? rest[1] : rest[0];
      // Node sends headers given to writeHead without keeping them; keep them, as its slow path does.
      this.statusCode = status;
      if (Array.isArray(headers))
        for (let i = 1; i < headers.length; i += 2) this.appendHeader(headers[i - 1], headers[i]);
      else for (const [name, value] of Object.entries(headers ?? {})) this.setHeader(name, value);
      snapshot();
      rest = typeof rest[0] === 'string' ? [rest[0]] : [];
    }
    return writeHead.call(this, status, ...rest);
  } as typeof res.writeHead;

  res.write = function (this: ServerResponse, ...args: unknown[]) {
    if (!done) {
      snapshot();
      collect(args[0], args[1]);
    }
    return write.apply(this, args);
  } as typeof res.write;

  res.end = function (this: ServerResponse, ...args: unknown[]) {
    if (done) return end.apply(this, args);
    done = true;
    res.off('close', onClose);
    snapshot();
    collect(args[0], args[1]);
    const status = head!.status;
    const headers = head!.headers;
    if (omitted) {
      end.apply(this, args);
      settle({ status, headers, body: null, omitted });
    } else {
      // Held until the record is completed, so that a client who got the response gets its replay.
      held = () => end.apply(this, args);
      settle({ status, headers, body: Buffer.concat(chunks, length) });
    }
    return this;
  } as typeof res.end;

  return {
    captured,
    flush() {
      const release = held;
      held = undefined;
      release?.();
    },
    fail,
  };
}

/** `res.getHeaders()` as pairs, repeated headers (Set-Cookie) as separate pairs. */
function headerPairs(headers: OutgoingHttpHeaders): Array<[string, string]> {
  return Object.entries(headers).flatMap(
    ([name, value]): Array<[string, string]> =>
      Array.isArray(value)
        ? value.map((item) => [name, item])
        : value === undefined
          ? []
          : [[name, String(value)]],
  );
}
