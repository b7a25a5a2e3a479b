import { concatBytes } from './bytes.js';

/**
 * The parts of Node's `http.IncomingMessage` that {@link readIncomingBody} uses. Described here rather
 * than imported, so that core stays free of `node:` modules; bindings pass the request itself.
 */
export interface IncomingBody {
  /** Whether the whole message has arrived (`IncomingMessage#complete`). */
  readonly complete: boolean;
  /** The next buffered chunk, or `null` when none is buffered now (`Readable#read`). */
  read(): Uint8Array | null;
  /** Put a chunk back at the front of the stream, to be read again (`Readable#unshift`). */
  unshift(chunk: Uint8Array): void;
  /** Add a `readable` or `close` listener (`EventEmitter#on`). */
  on(event: 'readable' | 'close', listener: () => void): unknown;
  /** Add an `error` listener (`EventEmitter#on`). */
  on(event: 'error', listener: (error: Error) => void): unknown;
  /** Remove a `readable` or `close` listener added with `on` (`EventEmitter#off`). */
  off(event: 'readable' | 'close', listener: () => void): unknown;
  /** Remove an `error` listener added with `on` (`EventEmitter#off`). */
  off(event: 'error', listener: (error: Error) => void): unknown;
}

/** What {@link readIncomingBody} found. */
export interface IncomingBodyResult {
  /** The body bytes, or the first `limit + 1` or more of them when `overLimit`. */
  bytes: Uint8Array;
  /** The body is longer than the limit (reading stopped there). */
  overLimit: boolean;
}

/**
 * Read a Node request's body (up to just past `limit` bytes) and leave the request as if nobody had:
 * the chunks go back with `unshift` before the stream could emit `end` (the last `read()` only
 * scheduled it for the next tick, and Node skips it when data was unshifted meanwhile), so that body
 * parsers, the framework or the route read it untouched afterwards.
 *
 * Plain stream events and a callback, no promise per chunk and no replacement stream: this runs on
 * every covered request. `callback` is called once.
 */
export function readIncomingBody(
  source: IncomingBody,
  limit: number,
  callback: (error: Error | null, body?: IncomingBodyResult) => void,
): void {
  new IncomingBodyReader(source, limit, callback).start();
}

class IncomingBodyReader {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;
  private finished = false;
  // Bound once per request, so that they can be removed again.
  private readonly onReadable: () => void;
  private readonly onError: (error: Error) => void;
  private readonly onClose: () => void;

  constructor(
    private readonly source: IncomingBody,
    private readonly limit: number,
    private readonly callback: (error: Error | null, body?: IncomingBodyResult) => void,
  ) {
    this.onReadable = this.readable.bind(this);
    this.onError = this.finish.bind(this);
    this.onClose = this.closed.bind(this);
  }

  start(): void {
    const { source } = this;
    source.on('readable', this.onReadable);
    source.on('error', this.onError);
    source.on('close', this.onClose);
  }

  private readable(): void {
    const { source } = this;
    for (let chunk = source.read(); chunk !== null; chunk = source.read()) {
      this.chunks.push(chunk);
      this.length += chunk.length;
      if (this.length > this.limit) {
        this.finish(null);
        return;
      }
    }
    if (source.complete) this.finish(null);
  }

  private closed(): void {
    this.finish(new Error('[idem] the request closed before its body ended'));
  }

  private finish(error: Error | null): void {
    if (this.finished) return;
    this.finished = true;
    const { source, chunks } = this;
    source.off('readable', this.onReadable);
    source.off('error', this.onError);
    source.off('close', this.onClose);
    if (error !== null) {
      this.callback(error);
      return;
    }
    // The chunks themselves go back; the caller gets a copy, as a parser might change what it reads.
    for (let i = chunks.length - 1; i >= 0; i--) source.unshift(chunks[i]!);
    this.callback(null, { bytes: concatBytes(chunks, this.length), overLimit: this.length > this.limit });
  }
}
