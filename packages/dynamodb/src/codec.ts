import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import {
  IdempotencyError,
  type IdempotencyRecord,
  isHeaderPairs,
  isOmittedBody,
  type RecordState,
  type StoredResponse,
} from '@idem/core';
import { type BodyEncoding, canCompress, gunzip, gzip } from './compression.js';

/**
 * The names of the attributes a record is kept in. Only `key` (and the sort key, when one is
 * configured) and `ttl` appear in the table definition; the others are plain attributes.
 */
export interface DynamoDBAttributeNames {
  /** Partition key, type `S`: the storage key. Default `"pk"`. */
  key: string;
  /** The table's TTL attribute, type `N`, epoch seconds, for DynamoDB's own (late) deletion. Default `"ttl"`. */
  ttl: string;
  /** `in_flight`, `completed` or `failed`, type `S`. Default `"state"`. */
  state: string;
  /** Request fingerprint, type `S`. Default `"fingerprint"`. */
  fingerprint: string;
  /** Fencing token of the current (or last) holder, type `S`. Default `"token"`. */
  token: string;
  /** End of the lease, type `N`, epoch milliseconds. Default `"leaseExpiresAt"`. */
  leaseExpiresAt: string;
  /** End of the record, type `N`, epoch milliseconds: what every read and condition checks. Default `"expiresAt"`. */
  expiresAt: string;
  /** The stored response, type `M` (status, headers as JSON, body bytes, maybe gzip). Default `"response"`. */
  response: string;
}

/** The default attribute names. */
export const DEFAULT_ATTRIBUTE_NAMES: Readonly<DynamoDBAttributeNames> = Object.freeze({
  key: 'pk',
  ttl: 'ttl',
  state: 'state',
  fingerprint: 'fingerprint',
  token: 'token',
  leaseExpiresAt: 'leaseExpiresAt',
  expiresAt: 'expiresAt',
  response: 'response',
});

/**
 * The attribute names in use: the defaults, overridden by the names `overrides` sets. A name given as
 * `undefined` keeps its default (a spread would put `undefined` in its place).
 */
export function attributeNames(
  overrides: { readonly [Name in keyof DynamoDBAttributeNames]?: string | undefined } | undefined,
): DynamoDBAttributeNames {
  const names = { ...DEFAULT_ATTRIBUTE_NAMES };
  if (overrides) {
    for (const name of Object.keys(names) as Array<keyof DynamoDBAttributeNames>) {
      const override = overrides[name];
      if (override !== undefined) names[name] = override;
    }
  }
  return names;
}

/** A DynamoDB item, as the low-level client speaks it. */
export type Item = Record<string, AttributeValue>;

const STATES: ReadonlySet<string> = new Set<RecordState>(['in_flight', 'completed', 'failed']);
const ENCODINGS: ReadonlySet<string> = new Set<BodyEncoding>(['gzip']);

class Corrupt extends Error {}

/** Turns records into DynamoDB attribute values and back. */
export class RecordCodec {
  /** `names`: the attribute names in use; bodies of at least `compressMinBytes` bytes are gzip candidates. */
  constructor(
    private readonly names: DynamoDBAttributeNames,
    private readonly compressMinBytes: number,
  ) {}

  /** The response as a map attribute, its body gzipped when that makes it smaller. */
  async encodeResponse(response: StoredResponse): Promise<AttributeValue> {
    let body = response.body;
    let encoding: BodyEncoding | undefined;
    if (body.length >= this.compressMinBytes && canCompress()) {
      const packed = await gzip(body);
      if (packed.length < body.length) {
        body = packed;
        encoding = 'gzip';
      }
    }
    const map: Item = {
      status: { N: String(response.status) },
      headers: { S: JSON.stringify(response.headers) },
      body: { B: body },
    };
    if (encoding) map['encoding'] = { S: encoding };
    if (response.omitted) map['omitted'] = { S: response.omitted };
    return { M: map };
  }

  /**
   * The response without its body, marked `too_large`: what is stored when even the compressed body
   * does not fit in an item. Headers are dropped as well when `keepHeaders` is false.
   */
  tooLarge(response: StoredResponse, keepHeaders: boolean): AttributeValue {
    return {
      M: {
        status: { N: String(response.status) },
        headers: { S: keepHeaders ? JSON.stringify(response.headers) : '[]' },
        body: { B: new Uint8Array(0) },
        omitted: { S: 'too_large' },
      },
    };
  }

  /**
   * Decode an item; `null` when its own expiry has passed (DynamoDB's TTL deletion is late).
   * @throws IdempotencyError `record_corrupt` naming the key.
   */
  async decode(key: string, item: Item, now: number): Promise<IdempotencyRecord | null> {
    const n = this.names;
    try {
      const expiresAt = number(item[n.expiresAt], n.expiresAt);
      if (expiresAt <= now) return null;
      const state = string(item[n.state], n.state);
      if (!STATES.has(state)) throw new Corrupt(`unknown state ${JSON.stringify(state)}`);
      const response = state === 'completed' ? await decodeResponse(item[n.response], n.response) : null;
      return {
        state: state as RecordState,
        fingerprint: string(item[n.fingerprint], n.fingerprint),
        token: string(item[n.token], n.token),
        leaseExpiresAt: number(item[n.leaseExpiresAt], n.leaseExpiresAt),
        expiresAt,
        response,
      };
    } catch (cause) {
      const reason = cause instanceof Corrupt ? cause.message : `bad response body (${String(cause)})`;
      throw new IdempotencyError(
        'record_corrupt',
        `[dynamodb] the record of key ${key} cannot be decoded: ${reason}`,
        {
          cause,
          details: { store: 'dynamodb', key },
        },
      );
    }
  }
}

async function decodeResponse(value: AttributeValue | undefined, name: string): Promise<StoredResponse> {
  if (value?.M === undefined) throw new Corrupt(`completed record without a map attribute ${name}`);
  const map = value.M;
  const status = number(map['status'], `${name}.status`);
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new Corrupt(`bad status ${status}`);
  const headers = decodeHeaders(string(map['headers'], `${name}.headers`));
  const stored = map['body']?.B;
  if (!(stored instanceof Uint8Array)) throw new Corrupt(`${name}.body is not binary`);
  const encoding = map['encoding'] === undefined ? undefined : string(map['encoding'], `${name}.encoding`);
  if (encoding !== undefined && !ENCODINGS.has(encoding))
    throw new Corrupt(`unknown body encoding ${encoding}`);
  const body = encoding === 'gzip' ? await gunzip(stored) : stored;
  const response: StoredResponse = { status, headers, body };
  if (map['omitted'] !== undefined) {
    const omitted = string(map['omitted'], `${name}.omitted`);
    if (!isOmittedBody(omitted)) throw new Corrupt(`unknown omitted marker ${omitted}`);
    response.omitted = omitted;
  }
  return response;
}

function decodeHeaders(json: string): Array<[string, string]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new Corrupt('headers are not JSON');
  }
  if (!isHeaderPairs(parsed)) throw new Corrupt('headers are not a list of name/value pairs');
  return parsed;
}

function string(value: AttributeValue | undefined, name: string): string {
  if (typeof value?.S !== 'string') throw new Corrupt(`attribute ${name} is missing or not a string`);
  return value.S;
}

function number(value: AttributeValue | undefined, name: string): number {
  const parsed = typeof value?.N === 'string' ? Number(value.N) : Number.NaN;
  if (!Number.isFinite(parsed)) throw new Corrupt(`attribute ${name} is missing or not a number`);
  return parsed;
}

const encoder = new TextEncoder();

/**
 * An upper estimate of an item's size as DynamoDB counts it against the 400 KB limit: attribute
 * names and values in bytes, numbers at their 21-byte maximum, 3 bytes per map or list plus one per
 * element.
 */
export function itemBytes(item: Item): number {
  let total = 0;
  for (const [name, value] of Object.entries(item)) total += encoder.encode(name).length + valueBytes(value);
  return total;
}

function valueBytes(value: AttributeValue): number {
  if (value.S !== undefined) return encoder.encode(value.S).length;
  if (value.N !== undefined) return 21;
  if (value.B !== undefined) return value.B.length;
  if (value.M !== undefined) {
    let total = 3;
    for (const [name, inner] of Object.entries(value.M))
      total += 1 + encoder.encode(name).length + valueBytes(inner);
    return total;
  }
  if (value.L !== undefined) return value.L.reduce((sum, inner) => sum + 1 + valueBytes(inner), 3);
  if (value.SS !== undefined) return value.SS.reduce((sum, s) => sum + encoder.encode(s).length, 3);
  if (value.NS !== undefined) return 3 + 21 * value.NS.length;
  if (value.BS !== undefined) return value.BS.reduce((sum, b) => sum + b.length, 3);
  return 1;
}
