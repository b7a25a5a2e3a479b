import {
  type IdempotencyError,
  type IdempotencyRecord,
  isHeaderPairs,
  isOmittedBody,
  type RecordState,
  recordCorrupt,
  type StoredResponse,
} from '@idem/core';

/** A record row as the statements return it (see `RECORD_COLUMNS`). */
export interface RecordRow {
  /** `in_flight`, `completed` or `failed`. */
  state: unknown;
  /** The claiming request's fingerprint. */
  fingerprint: unknown;
  /** The current (or last) holder's fencing token. */
  token: unknown;
  /** When the lease ends, in epoch ms (converted from `timestamptz` by the statement). */
  lease_expires_at: unknown;
  /** When the record expires, in epoch ms (converted from `timestamptz` by the statement). */
  expires_at: unknown;
  /** The stored response's HTTP status (read when `completed`). */
  status: unknown;
  /** The stored response's headers: `[name, value]` pairs, as `pg` parses the JSON column. */
  headers: unknown;
  /** The stored response's body bytes (`bytea`, a `Buffer`). */
  body: unknown;
  /** Why the body was not kept (`too_large`, `streaming`), or `null`. */
  omitted: unknown;
}

const STATES: ReadonlySet<string> = new Set<RecordState>(['in_flight', 'completed', 'failed']);

/** The `headers` column value: a JSON array of `[name, value]` pairs, order and repeats kept. */
export function encodeHeaders(headers: StoredResponse['headers']): string {
  return JSON.stringify(headers.map(([name, value]) => [name, value]));
}

/** Turn a row into a record, or throw `record_corrupt` when it cannot be one. */
export function decodeRecord(row: RecordRow, key: string): IdempotencyRecord {
  const { state, fingerprint, token, lease_expires_at: lease, expires_at: expires } = row;
  if (typeof state !== 'string' || !STATES.has(state)) throw corrupt(key, `unknown state ${String(state)}`);
  if (typeof fingerprint !== 'string' || typeof token !== 'string') {
    throw corrupt(key, 'fingerprint or token is not text');
  }
  if (!isTime(lease) || !isTime(expires)) throw corrupt(key, 'lease or expiry is not a time');
  return {
    state: state as RecordState,
    fingerprint,
    token,
    leaseExpiresAt: lease,
    expiresAt: expires,
    response: state === 'completed' ? decodeResponse(row, key) : null,
  };
}

function decodeResponse(row: RecordRow, key: string): StoredResponse {
  const { status, headers, body, omitted } = row;
  if (typeof status !== 'number' || !Number.isInteger(status)) throw corrupt(key, 'status is not an integer');
  if (!isHeaderPairs(headers)) throw corrupt(key, 'headers are not a list of [name, value] pairs');
  if (!(body instanceof Uint8Array)) throw corrupt(key, 'body is not bytes');
  const response: StoredResponse = {
    status,
    headers,
    // A plain view over pg's Buffer: callers get the Uint8Array the contract names, without a copy.
    body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength),
  };
  if (omitted !== null) {
    if (!isOmittedBody(omitted)) throw corrupt(key, 'unknown omitted marker');
    response.omitted = omitted;
  }
  return response;
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function corrupt(key: string, why: string): IdempotencyError {
  return recordCorrupt('postgres', key, why);
}
