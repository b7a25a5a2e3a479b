import type { CapturedResponse, HttpResponse } from '@idem/core';
import type { FastifyReply } from 'fastify';

type HeaderValue = string | number | readonly string[] | undefined;

const encoder = new TextEncoder();

/** Header pairs from Node/Fastify header objects, one pair per value of a repeated header. */
export function headerPairs(headers: Record<string, HeaderValue>): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (typeof value === 'object') for (const item of value) pairs.push([name, item]);
    else pairs.push([name, String(value)]);
  }
  return pairs;
}

/**
 * The route's response as `onSend` sees it, serialised: a string or Buffer is kept (copied, since
 * small Buffers share a pool); a stream (or a Web `Response`) goes out untouched and is not stored.
 */
export function captureReply(reply: FastifyReply, payload: unknown, maxBytes: number): CapturedResponse {
  const head = { status: reply.statusCode, headers: headerPairs(reply.getHeaders()) };
  if (payload === null || payload === undefined) return { ...head, body: new Uint8Array(0) };
  if (typeof payload === 'string') {
    // UTF-8 takes at least one byte per UTF-16 unit and at most three: count only when in between.
    const fits =
      payload.length * 3 <= maxBytes ||
      (payload.length <= maxBytes && Buffer.byteLength(payload) <= maxBytes);
    if (!fits) return { ...head, body: null, omitted: 'too_large' };
    return { ...head, body: encoder.encode(payload) };
  }
  if (payload instanceof Uint8Array) {
    if (payload.length > maxBytes) return { ...head, body: null, omitted: 'too_large' };
    return { ...head, body: new Uint8Array(payload) };
  }
  return { ...head, body: null, omitted: 'streaming' };
}

/** Put back the status and headers a route's response had when it was captured (`head`). */
export function restoreHead(reply: FastifyReply, head: CapturedResponse): void {
  for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name);
  reply.code(head.status).headers(headerRecord(head.headers));
}

/** Header pairs as Fastify's `reply.headers()` takes them: a repeated name's values in one array. */
function headerRecord(pairs: ReadonlyArray<readonly [string, string]>): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of pairs) {
    const previous = headers[name];
    headers[name] = previous === undefined ? value : [previous, value].flat();
  }
  return headers;
}

/** Send idem's own answer (a replay or a problem) through Fastify, so that its onSend hooks see it. */
export function sendResponse(reply: FastifyReply, response: HttpResponse): void {
  const { body } = response;
  reply.code(response.status).headers(headerRecord(response.headers));
  reply.send(body.length === 0 ? undefined : Buffer.from(body.buffer, body.byteOffset, body.byteLength));
}
