import type { IncomingMessage } from 'node:http';
import { IdempotencyError, readIncomingBody } from '@idem/core';

/** An Express request, as far as its body is concerned (`_body` is body-parser 1.x's "parsed" flag). */
type BodyRequest = IncomingMessage & { body?: unknown; _body?: boolean };

/**
 * The request body bytes for the fingerprint. When a body parser already consumed the stream, they
 * are derived from what it left in `req.body`; otherwise the stream is read here (up to `limit`) and
 * the bytes are put back into it, so that body parsers mounted after idem read it untouched.
 *
 * @throws IdempotencyError `request_too_large` past `limit` (the rest of the body is drained).
 */
export function requestBody(req: BodyRequest, limit: number): Promise<Uint8Array> {
  if (req._body === true || req.readableEnded) return Promise.resolve(parsedBodyBytes(req.body));
  if (req.complete && req.readableLength === 0) return Promise.resolve(new Uint8Array(0));
  return readAndRestore(req, limit);
}

// The core canonicalises JSON bodies, so re-serialising a parsed object fingerprints like its raw text.
function parsedBodyBytes(body: unknown): Uint8Array {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return Buffer.from(body);
  try {
    return Buffer.from(JSON.stringify(body) ?? '');
  } catch (cause) {
    // A parsed body nested deeper than the stack allows (the raw text would have been hashed as bytes).
    throw new IdempotencyError('request_too_large', 'the request body nests too deeply to be fingerprinted', {
      cause,
    });
  }
}

function readAndRestore(req: BodyRequest, limit: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    readIncomingBody(req, limit, (error, body) => {
      if (error !== null || body === undefined) {
        reject(error);
      } else if (body.overLimit) {
        // Drain the rest, as body parsers do, so that the connection can carry the 413.
        req.resume();
        reject(new IdempotencyError('request_too_large', `the request body is larger than ${limit} bytes`));
      } else resolve(body.bytes);
    });
  });
}
