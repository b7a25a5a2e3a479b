import { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { readIncomingBody } from '@idem/core';
import type { RequestPayload } from 'fastify';

/** The raw request body read for the fingerprint, and the stream Fastify parses in its place. */
export interface BufferedBody {
  /** The body bytes; longer than the limit when the body was (the rest was not buffered). */
  bytes: Uint8Array;
  /** The whole body, unchanged, for Fastify's own content-type parser. */
  payload: RequestPayload;
}

/**
 * Read the raw body up to `limit + 1` bytes in `preParsing`, then call `callback` with it. Reading it all
 * before parsing (rather than teeing what the parser reads) works with any content-type parser, even one
 * that hands the stream to the handler unread. The payload handed back replays what was read and then
 * continues with the rest.
 *
 * Plain stream events and a callback rather than an async iterator: this runs on every covered request,
 * and the iterator's promise per chunk (plus `Readable.from` over an async generator to replay it) cost
 * more than the rest of the plugin. The usual payload, Node's own request, is not even replaced: what
 * was read is put back into it (`readIncomingBody` of `@idem/core`).
 */
export function bufferRequestBody(
  payload: RequestPayload,
  limit: number,
  callback: (error: Error | null, body?: BufferedBody) => void,
): void {
  if (payload instanceof IncomingMessage) {
    readIncomingBody(payload, limit, (error, body) => {
      if (error !== null || body === undefined) callback(error ?? null);
      else callback(null, { bytes: body.bytes, payload });
    });
  } else new BodyReader(payload, limit, callback).start();
}

class BodyReader {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private finished = false;
  // Bound once per request, so that they can be removed again.
  private readonly onData: (chunk: Buffer | string) => void;
  private readonly onEnd: () => void;
  private readonly onError: (error: Error) => void;
  private readonly onClose: () => void;

  constructor(
    private readonly source: RequestPayload,
    private readonly limit: number,
    private readonly callback: (error: Error | null, body?: BufferedBody) => void,
  ) {
    this.onData = this.data.bind(this);
    this.onEnd = this.end.bind(this);
    this.onError = this.fail.bind(this);
    this.onClose = this.closed.bind(this);
  }

  start(): void {
    const { source } = this;
    source.on('data', this.onData);
    source.on('end', this.onEnd);
    source.on('error', this.onError);
    source.on('close', this.onClose);
    source.resume();
  }

  private data(chunk: Buffer | string): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.chunks.push(bytes);
    this.length += bytes.length;
    // Past the limit: stop here; the layer answers 413, and the parser still gets the whole body.
    if (this.length > this.limit) {
      this.source.pause();
      this.finish(null, true);
    }
  }

  private end(): void {
    this.finish(null, false);
  }

  private fail(error: Error): void {
    this.finish(error, false);
  }

  private closed(): void {
    this.finish(new Error('[idem] the request closed before its body ended'), false);
  }

  private finish(error: Error | null, rest: boolean): void {
    if (this.finished) return;
    this.finished = true;
    const { source } = this;
    source.off('data', this.onData);
    source.off('end', this.onEnd);
    source.off('error', this.onError);
    source.off('close', this.onClose);
    if (error !== null) {
      this.callback(error);
      return;
    }
    const parsed: RequestPayload = new ReplayedBody(this.chunks, rest ? source : null);
    // Fastify compares the encoded length with Content-Length when a preParsing hook decoded the body.
    if (source.receivedEncodedLength !== undefined) {
      Object.defineProperty(parsed, 'receivedEncodedLength', { get: () => source.receivedEncodedLength });
    }
    // A copy: the chunks may be views of a buffer the socket reuses.
    this.callback(null, { bytes: Buffer.concat(this.chunks, this.length), payload: parsed });
  }
}

/** The body again: the chunks already read, then (past the limit) whatever is left of the source. */
class ReplayedBody extends Readable {
  constructor(
    chunks: readonly Buffer[],
    private readonly rest: RequestPayload | null,
  ) {
    super();
    for (const chunk of chunks) this.push(chunk);
    if (rest === null) {
      this.push(null);
      return;
    }
    rest.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) rest.pause();
    });
    rest.once('end', () => this.push(null));
    rest.once('error', (error: Error) => this.destroy(error));
  }

  override _read(): void {
    this.rest?.resume();
  }
}
