import { IdempotencyError } from '@idem/core';

/**
 * What `fetch` takes as a body (the DOM library's `BodyInit`, which Node's types do not declare
 * globally: named through `RequestInit`, these declarations compile with either).
 */
export type RequestBody = NonNullable<RequestInit['body']>;

/** A request body ready to be sent once per attempt. */
export interface PreparedBody {
  /** What each attempt sends (the same value every time when `replayable`). */
  body: RequestBody | null;
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
 * is off, in which case they are sent once and not retried. A stream not read to its end (too long,
 * failed, aborted) is cancelled.
 *
 * @throws IdempotencyError `request_too_large` when a stream is longer than `maxBufferBytes`.
 * @throws the reason of the reading's signal as soon as it aborts while a stream is being read.
 */
export async function prepareBody(
  body: RequestBody | null | undefined,
  options: {
    bufferStreams: boolean;
    maxBufferBytes: number;
    /** Starts what bounds the reading of a stream (the caller's signal, the deadline): only for one. */
    startReading: () => { signal: AbortSignal; clear: () => void };
  },
): Promise<PreparedBody> {
  if (body === null || body === undefined) return { body: null, replayable: true };
  if (typeof FormData !== 'undefined' && body instanceof FormData) {
    const blob = await new Response(body).blob();
    return { body: blob, replayable: true, contentType: blob.type };
  }
  if (!isStream(body)) return { body, replayable: true };
  if (!options.bufferStreams) return { body, replayable: false };
  const reading = options.startReading();
  try {
    return { body: await readCapped(body, options.maxBufferBytes, reading.signal), replayable: true };
  } finally {
    reading.clear();
  }
}

function isStream(body: RequestBody): body is RequestBody & AsyncIterable<unknown> {
  return (
    (typeof ReadableStream !== 'undefined' && body instanceof ReadableStream) ||
    // Node streams and async generators, which undici and node-fetch accept as bodies.
    (typeof body === 'object' && Symbol.asyncIterator in body)
  );
}

async function readCapped(
  stream: ReadableStream | AsyncIterable<unknown>,
  cap: number,
  signal: AbortSignal,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const encoder = new TextEncoder();
  // getReader rather than for-await: not every browser's ReadableStream is async iterable.
  const iterator =
    typeof ReadableStream !== 'undefined' && stream instanceof ReadableStream
      ? readerIterator(stream.getReader())
      : (stream as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  try {
    // A stream may stall without ever ending or failing: only the signal gets the call out of the wait.
    const read = () => untilAborted(iterator.next(), signal);
    for (let next = await read(); !next.done; next = await read()) {
      const chunk = toBytes(next.value, encoder);
      size += chunk.byteLength;
      if (size > cap) {
        throw new IdempotencyError(
          'request_too_large',
          `[fetch] the request body stream is larger than maxBufferBytes (${cap}); raise it, or set bufferStreams: false to send the stream once without retries`,
        );
      }
      chunks.push(chunk);
    }
  } catch (error) {
    release(stream, iterator);
    throw error;
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** `promise`, or a rejection with the signal's reason as soon as it aborts, whichever comes first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Stop a stream that will not be read to its end, freeing what feeds it (a socket, a file). Not awaited:
 * an async generator runs `return` only once its pending step settles, which for a stalled one is never;
 * for the same reason a Node stream, whose iterator is such a generator, is destroyed as well.
 */
function release(stream: ReadableStream | AsyncIterable<unknown>, iterator: AsyncIterator<unknown>): void {
  Promise.resolve()
    .then(() => iterator.return?.())
    .catch(() => {});
  const destroy = (stream as { destroy?: unknown }).destroy;
  if (typeof destroy === 'function') destroy.call(stream);
}

function toBytes(chunk: unknown, encoder: InstanceType<typeof TextEncoder>): Uint8Array {
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
