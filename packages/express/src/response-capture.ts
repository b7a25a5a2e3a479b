import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { CapturedResponse, OmittedBody } from '@idem/core';

/** The route's response, captured while it is sent. */
export interface ResponseCapture {
  /**
   * Resolves when the route ends the response. Its final `end` is held back until
   * {@link ResponseCapture.flush}; the writes before it (a streamed or oversized body) went through.
   * Resolves without a body (`omitted`) when the connection closed after the headers were sent and
   * before the route ended the response.
   */
  readonly captured: Promise<CapturedResponse>;
  /** Let the held `end` through (after the record was completed or released). */
  flush(): void;
  /** The route failed (an error reached Express' error handling): reject `captured`, unless it ended. */
  fail(error: unknown): void;
}

type Method = (this: ServerResponse, ...args: unknown[]) => unknown;

/** Node's state of a response (`_header` is the head it sends, `headersSent` reads it). */
interface ResponseState {
  _header: string | null | undefined;
  _headerSent: boolean;
}

/**
 * The `_header` of a response whose route ended it while idem holds the end: Node's own checks then
 * see the headers as sent (`headersSent`; `setHeader` and `writeHead` throw ERR_HTTP_HEADERS_SENT), as
 * they are after an end. Never sent: `_headerSent` is set with it, and both are reset before the end.
 */
const HELD_HEAD = '(held by idem until the record is completed)';

/**
 * Hook `res.writeHead`, `res.write` and `res.end` (through which `res.send`, `res.json` and piped
 * streams go) to capture status, headers and up to `maxBytes` of body. Writes always go straight
 * through, so streaming keeps streaming; the headers are captured as they are when they are sent.
 */
export function captureResponse(res: ServerResponse, maxBytes: number): ResponseCapture {
  return new Capture(res, maxBytes);
}

class Capture implements ResponseCapture {
  readonly captured: Promise<CapturedResponse>;
  private readonly original: { writeHead: Method; write: Method; end: Method };
  private head: { status: number; headers: Array<[string, string]> } | undefined;
  private done = false;
  /** The route ended the response: what it writes after that is refused, as Node refuses it. */
  private ended = false;
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private omitted: OmittedBody | undefined;
  private held: unknown[] | undefined;
  private settle!: (captured: CapturedResponse) => void;
  private abort!: (error: unknown) => void;
  private readonly onClose: () => void;

  constructor(
    private readonly res: ServerResponse,
    private readonly maxBytes: number,
  ) {
    this.captured = new Promise<CapturedResponse>((resolve, reject) => {
      this.settle = resolve;
      this.abort = reject;
    });
    this.original = {
      writeHead: res.writeHead as Method,
      write: res.write as Method,
      end: res.end as Method,
    };
    this.onClose = this.closed.bind(this);
    res.once('close', this.onClose);
    // Only these three properties are added to the response: Express changes the prototype of every
    // response, after which each property added to one costs microseconds (a new hidden class).
    res.writeHead = ((status: number, ...rest: unknown[]) =>
      this.writeHead(status, rest)) as typeof res.writeHead;
    res.write = ((...args: unknown[]) => this.write(args)) as typeof res.write;
    res.end = ((...args: unknown[]) => this.end(args)) as typeof res.end;
  }

  writeHead(status: number, rest: unknown[]): unknown {
    const { res } = this;
    if (!this.done && !this.head) {
      const headers = typeof rest[0] === 'string' ? rest[1] : rest[0];
      // Node sends headers given to writeHead without keeping them; keep them, as its slow path does.
      res.statusCode = status;
      if (Array.isArray(headers))
        for (let i = 1; i < headers.length; i += 2) res.appendHeader(headers[i - 1], headers[i]);
      else for (const [name, value] of Object.entries(headers ?? {})) res.setHeader(name, value as string);
      this.snapshot();
      rest = typeof rest[0] === 'string' ? [rest[0]] : [];
    }
    return this.original.writeHead.call(res, status, ...rest);
  }

  write(args: unknown[]): unknown {
    if (this.ended) {
      this.writeAfterEnd(args);
      return false;
    }
    if (!this.done) {
      this.snapshot();
      this.collect(args[0], args[1]);
    }
    return this.original.write.apply(this.res, args);
  }

  end(args: unknown[]): unknown {
    if (this.ended) {
      if (typeof args[0] !== 'function' && args[0]) this.writeAfterEnd(args);
      else {
        // As Node: a callback waits for the end that is still going out, or hears that it is done.
        const callback = callbackOf(args);
        if (callback && !this.res.writableFinished) this.res.once('finish', callback);
        else
          callback?.(nodeError('ERR_STREAM_ALREADY_FINISHED', 'Cannot call end after a stream was finished'));
      }
      return this.res;
    }
    if (this.done) return this.original.end.apply(this.res, args);
    this.done = true;
    this.ended = true;
    const { res } = this;
    res.off('close', this.onClose);
    this.snapshot();
    this.collect(args[0], args[1]);
    const { status, headers } = this.head!;
    // The end is held until the record is completed, so that a client who got the whole response and
    // retries gets its replay (or, for a body that was not stored, 410), never "in flight". Meanwhile
    // the response must look ended: a second answer (`res.json` twice, a timeout middleware's answer
    // and the route's late one) fails as Node fails it, instead of going out before the held end.
    this.held = args;
    const state = res as unknown as ResponseState;
    if (state._header === null) {
      state._header = HELD_HEAD;
      state._headerSent = true;
    }
    if (this.omitted) this.settle({ status, headers, body: null, omitted: this.omitted });
    else this.settle({ status, headers, body: Buffer.concat(this.chunks, this.length) });
    return this.res;
  }

  flush(): void {
    const args = this.held;
    if (!args) return;
    this.held = undefined;
    const { res } = this;
    const state = res as unknown as ResponseState;
    if (state._header === HELD_HEAD) {
      state._header = null;
      state._headerSent = false;
      // `res.status()` only sets the property, so a refused second answer may have changed it.
      res.statusCode = this.head!.status;
    }
    this.original.end.apply(res, args);
  }

  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.res.off('close', this.onClose);
    this.abort(error);
  }

  /**
   * A write after the route's end is refused: its callback gets Node's error on the next tick, as
   * Node's does. Unlike Node, no 'error' event is emitted: without a listener it ends the process, here
   * before the held end even reached the client.
   */
  private writeAfterEnd(args: unknown[]): void {
    const callback = callbackOf(args);
    if (callback) process.nextTick(callback, nodeError('ERR_STREAM_WRITE_AFTER_END', 'write after end'));
  }

  private closed(): void {
    // Before any header, the route is still working (its client went away): wait for its end.
    if (!this.res.headersSent) return;
    // After them, the route ran and its side effects happened: the record completes without a body (a
    // retry gets 410), and is never released for a retry to run the route again, perhaps beside it.
    this.done = true;
    this.snapshot();
    const { status, headers } = this.head!;
    this.settle({ status, headers, body: null, omitted: this.omitted ?? 'streaming' });
  }

  private snapshot(): void {
    if (this.head) return;
    const { res } = this;
    this.head = { status: res.statusCode, headers: headerPairs(res.getHeaders()) };
    const type = res.getHeader('content-type');
    if (type !== undefined && /^text\/event-stream/i.test(String(type))) this.omitted = 'streaming';
    else if (Number(res.getHeader('content-length') ?? 0) > this.maxBytes) this.omitted = 'too_large';
  }

  private collect(chunk: unknown, encoding: unknown): void {
    if (this.omitted || chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const bytes =
      typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' && Buffer.isEncoding(encoding) ? encoding : 'utf8')
        : Buffer.from(chunk as Uint8Array); // a copy: writers may reuse their buffers
    this.length += bytes.length;
    if (this.length > this.maxBytes) {
      this.omitted = 'too_large';
      this.chunks.length = 0;
    } else this.chunks.push(bytes);
  }
}

/** The callback given to `write` or `end`: the first function among their arguments. */
function callbackOf(args: unknown[]): ((error?: Error) => void) | undefined {
  for (const arg of args) if (typeof arg === 'function') return arg as (error?: Error) => void;
  return undefined;
}

/** An error as Node's own (an `Error` with a `code`). */
function nodeError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** `res.getHeaders()` as pairs, repeated headers (Set-Cookie) as separate pairs. */
function headerPairs(headers: OutgoingHttpHeaders): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) pairs.push([name, item]);
    else pairs.push([name, String(value)]);
  }
  return pairs;
}
