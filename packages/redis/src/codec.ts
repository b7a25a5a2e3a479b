import { type IdempotencyRecord, isOmittedBody, type RecordState, type StoredResponse } from '@idem/core';
import { RECORD_FORMAT } from './scripts.js';

/**
 * A record is one Redis hash. Field names are one letter because they repeat in every record:
 *
 * | field | holds                                                  | written by        |
 * |-------|--------------------------------------------------------|-------------------|
 * | `v`   | format version, `"1"`                                  | acquire           |
 * | `s`   | state: `in_flight`, `completed` or `failed`            | every write       |
 * | `f`   | fingerprint                                            | acquire           |
 * | `t`   | fencing token                                          | acquire           |
 * | `l`   | lease end, epoch ms on the Redis clock                 | acquire, extend   |
 * | `e`   | record end, epoch ms (the key's `PEXPIREAT` is the same) | acquire, complete, release |
 * | `c`   | HTTP status                                            | complete          |
 * | `h`   | headers, a JSON array `[name, value, name, value, ...]` | complete          |
 * | `b`   | body bytes, raw (binary-safe, no base64)               | complete          |
 * | `o`   | why the body was omitted, when it was                  | complete          |
 */

/** The arguments `complete` sends for a response: status, headers, body bytes, omitted marker. */
export type EncodedResponse = [status: string, headers: string, body: Buffer, omitted: string];

/** A reply that is not a record this store wrote; `message` says what is wrong with it. */
export class RecordFormatError extends Error {
  /** Always `'RecordFormatError'`. */
  override readonly name = 'RecordFormatError';
}

const STATES: ReadonlySet<string> = new Set<RecordState>(['in_flight', 'completed', 'failed']);
const EPOCH_MS = /^\d{1,16}$/;
const STATUS = /^[1-9]\d\d$/;

/** The `complete` arguments for `response`. The body is passed as bytes, never copied or re-encoded. */
export function encodeResponse(response: StoredResponse): EncodedResponse {
  const { status, headers, body, omitted } = response;
  if (!Number.isInteger(status) || status < 100 || status > 999) {
    throw new TypeError(`[idem] [redis] a stored status must be an integer from 100 to 999, got ${status}`);
  }
  const flat: string[] = [];
  for (const [name, value] of headers) flat.push(name, value);
  return [
    String(status),
    // JSON escapes lone surrogates, so every JS string survives, not only well-formed UTF-16.
    JSON.stringify(flat),
    Buffer.from(body.buffer, body.byteOffset, body.byteLength),
    omitted ?? '',
  ];
}

/**
 * The record in an `HGETALL`-shaped reply (field, value, field, value, ... as Buffers).
 * @throws RecordFormatError when a field is missing, malformed or of an unknown version.
 */
export function decodeRecord(reply: readonly unknown[]): IdempotencyRecord {
  const fields = new Map<string, Buffer>();
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const name = reply[i];
    const value = reply[i + 1];
    if (!Buffer.isBuffer(name) || !Buffer.isBuffer(value))
      throw new RecordFormatError('is not a flat hash reply');
    fields.set(name.toString('latin1'), value);
  }
  if (reply.length % 2 !== 0) throw new RecordFormatError('is not a flat hash reply');

  const text = (name: string): string => {
    const value = fields.get(name);
    if (value === undefined) throw new RecordFormatError(`lacks field ${name}`);
    return value.toString('utf8');
  };
  const epochMs = (name: string): number => {
    const value = text(name);
    if (!EPOCH_MS.test(value)) throw new RecordFormatError(`has a malformed time in field ${name}`);
    return Number(value);
  };

  if (text('v') !== RECORD_FORMAT) throw new RecordFormatError('has no known format version (field v)');
  const state = text('s');
  if (!STATES.has(state)) throw new RecordFormatError('has an unknown state (field s)');
  return {
    state: state as RecordState,
    fingerprint: text('f'),
    token: text('t'),
    leaseExpiresAt: epochMs('l'),
    expiresAt: epochMs('e'),
    response: state === 'completed' ? decodeResponse(fields, text) : null,
  };
}

function decodeResponse(fields: Map<string, Buffer>, text: (name: string) => string): StoredResponse {
  const status = text('c');
  if (!STATUS.test(status)) throw new RecordFormatError('has a malformed status (field c)');
  const body = fields.get('b');
  if (body === undefined) throw new RecordFormatError('lacks field b');
  const response: StoredResponse = {
    status: Number(status),
    headers: decodeHeaders(text('h')),
    // A copy, so the record does not pin the connection's read buffer and is a plain Uint8Array.
    body: new Uint8Array(body),
  };
  const omitted = fields.get('o')?.toString('utf8');
  if (omitted !== undefined) {
    if (!isOmittedBody(omitted)) throw new RecordFormatError('has an unknown omitted-body marker (field o)');
    response.omitted = omitted;
  }
  return response;
}

function decodeHeaders(json: string): Array<[string, string]> {
  let flat: unknown;
  try {
    flat = JSON.parse(json);
  } catch {
    throw new RecordFormatError('has malformed headers (field h)');
  }
  if (!Array.isArray(flat) || flat.length % 2 !== 0 || !flat.every((item) => typeof item === 'string')) {
    throw new RecordFormatError('has malformed headers (field h)');
  }
  const headers: Array<[string, string]> = [];
  for (let i = 0; i < flat.length; i += 2) headers.push([flat[i] as string, flat[i + 1] as string]);
  return headers;
}
