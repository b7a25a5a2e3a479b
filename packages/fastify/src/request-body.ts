import { Readable } from 'node:stream';
import type { RequestPayload } from 'fastify';

/** The raw request body read for the fingerprint, and the stream Fastify parses in its place. */
export interface BufferedBody {
  /** The body bytes; longer than the limit when the body was (the rest was not buffered). */
  bytes: Uint8Array;
  /** The whole body, unchanged, for Fastify's own content-type parser. */
  payload: RequestPayload;
}

/**
 * Read the raw body up to `limit + 1` bytes in `preParsing`. Reading it all before parsing (rather than
 * teeing what the parser reads) works with any content-type parser, even one that hands the stream to
 * the handler unread. The returned payload replays what was read and then continues with the rest.
 */
export async function bufferRequestBody(payload: RequestPayload, limit: number): Promise<BufferedBody> {
  const source = payload[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let length = 0;
  let rest = true;
  while (length <= limit) {
    const next = await source.next();
    if (next.done) {
      rest = false;
      break;
    }
    const chunk: Buffer = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    chunks.push(chunk);
    length += chunk.length;
  }
  async function* replay() {
    yield* chunks;
    // Not `for await`: leaving it early would destroy the request stream.
    for (let next = rest ? await source.next() : null; next && !next.done; next = await source.next()) {
      yield next.value as Buffer;
    }
  }
  const parsed: RequestPayload = Readable.from(replay(), { objectMode: false });
  // Fastify compares the encoded length with Content-Length when a preParsing hook decoded the body.
  if (payload.receivedEncodedLength !== undefined) {
    Object.defineProperty(parsed, 'receivedEncodedLength', { get: () => payload.receivedEncodedLength });
  }
  return { bytes: Buffer.concat(chunks, length), payload: parsed };
}
