import { IdempotencyError } from '@idem/core';

/** A request body ready to be sent once per attempt. */
export interface PreparedBody {
  /** What each attempt sends (the same value every time when `replayable`). */
  body: BodyInit | null;
  /** `false` for a one-shot stream the caller chose not to buffer: it can be sent only once. */
  replayable: boolean;
  /** The content type the body implies (FormData's multipart boundary), when the caller set none. */
  contentType?: string;
}

/**
 * Turn a fetch body into one that every attempt can send again, byte for byte.
 * Strings, bytes, URLSearchParams and Blobs are immutable enough to be passed as they are. FormData is
 * serialised once: sent again it would get a new multipart boundary, so different bytes, so a different
 * idem fingerprint and a `422`. Streams are read once, up to `maxBufferBytes`, unless `bufferStreams`
 * is off, in which case they are sent once and not retried.
 *
 * @throws IdempotencyError `request_too_large` when a stream is longer than `maxBufferBytes`.
 */
export async function prepareBody(
  body: BodyInit | null | undefined,
  options: { bufferStreams: boolean; maxBufferBytes: number },
): Promise<PreparedBody> {
  if (body === null || body === undefined) return { body: null, replayable: true };
  if (typeof FormData !== 'undefined' && body instanceof FormData) {
    const blob = await new Response(body).blob();
    return { body: blob, replayable: true, contentType: blob.type };
  }
  if (!isStream(body)) return { body, replayable: true };
  if (!options.bufferStreams) return { body, replayable: false };
  return { body: await readCapped(body, options.maxBufferBytes), replayable: true };
}

function isStream(body: BodyInit): body is BodyInit & AsyncIterable<unknown> {
  return (
    (typeof ReadableStream !== 'undefined' && body instanceof ReadableStream) ||
    // Node streams and async generators, which undici and node-fetch accept as bodies.
    (typeof body === 'object' && Symbol.asyncIterator in body)
  );
}

async function readCapped(
  stream: ReadableStream | AsyncIterable<unknown>,
  cap: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const encoder = new TextEncoder();
  // getReader rather than for-await: not every browser's ReadableStream is async iterable.
  const iterator =
    typeof ReadableStream !== 'undefined' && stream instanceof ReadableStream
      ? readerIterator(stream.getReader())
      : (stream as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
    const chunk = toBytes(next.value, encoder);
    size += chunk.byteLength;
    if (size > cap) {
      await iterator.return?.();
      throw new IdempotencyError(
        'request_too_large',
        `[fetch] the request body stream is larger than maxBufferBytes (${cap}); raise it, or set bufferStreams: false to send the stream once without retries`,
      );
    }
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

function toBytes(chunk: unknown, encoder: TextEncoder): Uint8Array {
  if (typeof chunk === 'string') return encoder.encode(chunk);
  // A copy: a stream may reuse its buffer for the next chunk.
  if (ArrayBuffer.isView(chunk))
    return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength).slice();
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk.slice(0));
  throw new TypeError('[idem] [fetch] a request body stream must yield bytes or strings');
}

function readerIterator(reader: ReadableStreamDefaultReader): AsyncIterator<unknown> {
  return {
    next: () => reader.read() as Promise<IteratorResult<unknown>>,
    return: async () => {
      await reader.cancel();
      return { done: true, value: undefined };
    },
  };
}
