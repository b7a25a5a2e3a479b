import {
  type AttributeValue,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { AcquireResult, Claim, IdempotencyRecord, Store, StoredResponse } from '@idem/core';
import { attributeNames, type DynamoDBAttributeNames, type Item, itemBytes, RecordCodec } from './codec.js';

/** Options of {@link dynamodbStore}. */
export interface DynamoDBStoreOptions {
  /** The client to use, configured by you (region, credentials, retries, endpoint). */
  client: DynamoDBClient;
  /** The table name. Create it with `createTable()` or from the definition in the README. */
  table: string;
  /** Attribute names, for tables with a naming scheme of their own. Defaults: {@link DEFAULT_ATTRIBUTE_NAMES}. */
  attributes?: { [Name in keyof DynamoDBAttributeNames]?: string | undefined } | undefined;
  /**
   * For a table with a composite primary key (single-table designs): the sort key attribute and the
   * constant value records use in it. Default: none (the table has a partition key only).
   */
  sortKey?:
    | {
        /** The sort key attribute's name (type `S`). */
        attribute: string;
        /** The value every idem record has in it; non-empty. */
        value: string;
      }
    | undefined;
  /**
   * How far apart the clocks of your servers may be, in ms. DynamoDB has no clock a condition can read,
   * so every time comes from the clock of the server making the call. A lease is only taken over once
   * it has ended more than `clockSkewMs` ago on the taker's clock, so a server whose clock runs ahead by
   * up to this much cannot take over a lease that is still live on the holder's clock. The price: a
   * crashed holder's lease is recovered `clockSkewMs` later. Record expiry (hours) uses no margin: a
   * record lives its ttl give or take the skew. Default 1000.
   */
  clockSkewMs?: number | undefined;
  /**
   * Bodies of at least this many bytes are gzipped when that makes them smaller (fewer write units,
   * and more fits in DynamoDB's 400 KB item). `Infinity` turns compression off. Default 1024.
   */
  compressMinBytes?: number | undefined;
  /** The clock, in epoch ms. Default `Date.now`; tests inject skewed clocks. */
  now?: (() => number) | undefined;
}

/** A {@link Store} on DynamoDB, with the table it writes to. */
export interface DynamoDBStore extends Store {
  /** The client passed in `options.client`, for raw access with the same configuration. */
  readonly client: DynamoDBClient;
  /** The table name the store reads and writes. */
  readonly table: string;
  /** The attribute names in use (defaults merged with `options.attributes`). */
  readonly attributes: Readonly<DynamoDBAttributeNames>;
  /** The primary key of the item that holds `key`, for raw access (tests, admin tools). */
  itemKey(key: string): Item;
}

/** DynamoDB's item size limit, names and values included. */
const MAX_ITEM_BYTES = 400 * 1024;
/** Room for the fingerprint (unknown to `complete`; core's are 64 characters) and estimation slack. */
const RESERVED_BYTES = 1024;

/**
 * A Store on DynamoDB over a client you pass in. One item per key; every operation is one request:
 * `acquire` is a conditional `PutItem` that returns the blocking item when the condition fails
 * (`ReturnValuesOnConditionCheckFailure: ALL_OLD`), so a new request costs 2 round trips (acquire,
 * complete) and a replay 1; `complete`, `release` and `extend` are `UpdateItem`s conditional on the
 * fencing token; reads are strongly consistent.
 *
 * Expiry: each item carries its expiry in ms (checked by every read and condition, because DynamoDB's
 * TTL deletes expired items late, up to days) and in epoch seconds in the TTL attribute, so that
 * DynamoDB eventually deletes it. Bodies are gzipped when that helps; a response that still does not
 * fit in an item is stored without its body, marked `omitted: 'too_large'`.
 *
 * Backend failures (after the client's own retries) are thrown as they are; an item that cannot be
 * decoded is an `IdempotencyError` `record_corrupt` naming the key.
 *
 * ```ts
 * const store = dynamodbStore({ client: new DynamoDBClient({}), table: 'idempotency' });
 * ```
 */
export function dynamodbStore(options: DynamoDBStoreOptions): DynamoDBStore {
  return new DynamoDBIdempotencyStore(options);
}

class DynamoDBIdempotencyStore implements DynamoDBStore {
  readonly name = 'dynamodb';
  readonly client: DynamoDBClient;
  readonly table: string;
  readonly attributes: Readonly<DynamoDBAttributeNames>;
  private readonly sortKey: { attribute: string; value: string } | undefined;
  private readonly clockSkewMs: number;
  private readonly now: () => number;
  private readonly codec: RecordCodec;
  private readonly names: Record<string, string>;

  constructor(options: DynamoDBStoreOptions) {
    if (!options?.client) throw new TypeError('[idem] [dynamodb] options.client is required');
    if (!options.table) throw new TypeError('[idem] [dynamodb] options.table is required');
    this.client = options.client;
    this.table = options.table;
    this.attributes = Object.freeze(attributeNames(options.attributes));
    this.sortKey = options.sortKey;
    const used = [...Object.values(this.attributes), ...(this.sortKey ? [this.sortKey.attribute] : [])];
    if (
      used.some((name) => typeof name !== 'string' || name.length === 0) ||
      new Set(used).size !== used.length
    ) {
      throw new TypeError(
        `[idem] [dynamodb] attribute names must be distinct, non-empty strings: ${used.join(', ')}`,
      );
    }
    if (this.sortKey && !this.sortKey.value) {
      throw new TypeError(
        '[idem] [dynamodb] sortKey.value must be a non-empty string (DynamoDB key values cannot be empty)',
      );
    }
    this.clockSkewMs = options.clockSkewMs ?? 1_000;
    if (!(this.clockSkewMs >= 0) || !Number.isFinite(this.clockSkewMs)) {
      throw new TypeError('[idem] [dynamodb] clockSkewMs must be a finite number >= 0');
    }
    const compressMinBytes = options.compressMinBytes ?? 1_024;
    if (!(compressMinBytes >= 0)) throw new TypeError('[idem] [dynamodb] compressMinBytes must be >= 0');
    this.now = options.now ?? Date.now;
    this.codec = new RecordCodec(this.attributes, compressMinBytes);
    const a = this.attributes;
    // Every expression names attributes through placeholders: "state", "token", "ttl" are reserved words.
    this.names = {
      '#key': a.key,
      '#ttl': a.ttl,
      '#state': a.state,
      '#fingerprint': a.fingerprint,
      '#token': a.token,
      '#lease': a.leaseExpiresAt,
      '#expires': a.expiresAt,
      '#response': a.response,
    };
  }

  itemKey(key: string): Item {
    const item: Item = { [this.attributes.key]: { S: key } };
    if (this.sortKey) item[this.sortKey.attribute] = { S: this.sortKey.value };
    return item;
  }

  async acquire(key: string, claim: Claim): Promise<AcquireResult> {
    const now = this.now();
    const a = this.attributes;
    const expiresAt = Math.ceil(now + claim.ttlMs);
    const item: Item = {
      ...this.itemKey(key),
      [a.state]: { S: 'in_flight' },
      [a.fingerprint]: { S: claim.fingerprint },
      [a.token]: { S: claim.token },
      [a.leaseExpiresAt]: { N: String(Math.ceil(now + claim.leaseMs)) },
      [a.expiresAt]: { N: String(expiresAt) },
      [a.ttl]: { N: String(ttlSeconds(expiresAt)) },
    };
    try {
      // The takeover rule of core's `transition`, with the lease judged `clockSkewMs` late.
      await this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: item,
          ConditionExpression:
            'attribute_not_exists(#key) OR #expires <= :now OR (#fingerprint = :fingerprint AND ' +
            '(#state = :failed OR (#state = :in_flight AND #lease <= :leaseCutoff)))',
          ExpressionAttributeNames: this.pick('#key', '#expires', '#fingerprint', '#state', '#lease'),
          ExpressionAttributeValues: {
            ':now': { N: String(now) },
            ':leaseCutoff': { N: String(now - this.clockSkewMs) },
            ':fingerprint': { S: claim.fingerprint },
            ':failed': { S: 'failed' },
            ':in_flight': { S: 'in_flight' },
          },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { acquired: true };
    } catch (error) {
      const old = conditionFailedItem(error);
      if (old === undefined) throw error;
      // A token is unique to one claim: finding ours means an SDK retry of this very PutItem, whose
      // first attempt did succeed but whose answer was lost.
      if (old[a.token]?.S === claim.token) return { acquired: true };
      const record = await this.codec.decode(key, old, now);
      if (record === null) {
        throw new Error(`[idem] [dynamodb] acquire of ${key} was refused by an item that has expired`, {
          cause: error,
        });
      }
      return { acquired: false, record };
    }
  }

  async complete(key: string, token: string, response: StoredResponse, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const expiresAt = Math.ceil(now + ttlMs);
    const a = this.attributes;
    const rest: Item = {
      ...this.itemKey(key),
      [a.state]: { S: 'completed' },
      [a.token]: { S: token },
      [a.leaseExpiresAt]: { N: '0' },
      [a.expiresAt]: { N: '0' },
      [a.ttl]: { N: '0' },
    };
    const fits = (value: AttributeValue) =>
      itemBytes({ ...rest, [a.response]: value }) + RESERVED_BYTES <= MAX_ITEM_BYTES;
    const bare = this.codec.tooLarge(response, false);
    let stored = await this.codec.encodeResponse(response);
    if (!fits(stored)) {
      const withHeaders = this.codec.tooLarge(response, true);
      stored = fits(withHeaders) ? withHeaders : bare;
    }
    const update = (value: AttributeValue) =>
      this.update(
        key,
        token,
        now,
        'SET #state = :completed, #expires = :expires, #ttl = :ttl, #response = :response',
        {
          ':completed': { S: 'completed' },
          ':expires': { N: String(expiresAt) },
          ':ttl': { N: String(ttlSeconds(expiresAt)) },
          ':response': value,
        },
      );
    try {
      return await update(stored);
    } catch (error) {
      // The estimate leaves room, but a fingerprint of unusual length could still tip the item over:
      // rather than leave the record in flight, store the response without its body.
      if (!isItemTooLarge(error) || stored === bare) throw error;
      return update(bare);
    }
  }

  async release(key: string, token: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const expiresAt = Math.ceil(now + ttlMs);
    return this.update(key, token, now, 'SET #state = :failed, #expires = :expires, #ttl = :ttl', {
      ':failed': { S: 'failed' },
      ':expires': { N: String(expiresAt) },
      ':ttl': { N: String(ttlSeconds(expiresAt)) },
    });
  }

  async extend(key: string, token: string, leaseMs: number): Promise<boolean> {
    const now = this.now();
    return this.update(key, token, now, 'SET #lease = :lease', {
      ':lease': { N: String(Math.ceil(now + leaseMs)) },
    });
  }

  async get(key: string): Promise<IdempotencyRecord | null> {
    const { Item: item } = await this.client.send(
      new GetItemCommand({ TableName: this.table, Key: this.itemKey(key), ConsistentRead: true }),
    );
    return item === undefined ? null : this.codec.decode(key, item, this.now());
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteItemCommand({ TableName: this.table, Key: this.itemKey(key) }));
  }

  /** A write by the holder of `token`: only while the record is in flight with it and has not expired. */
  private async update(
    key: string,
    token: string,
    now: number,
    expression: string,
    values: Record<string, AttributeValue>,
  ): Promise<boolean> {
    const placeholders = expression.match(/#\w+/g) ?? [];
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: this.itemKey(key),
          UpdateExpression: expression,
          ConditionExpression: '#token = :token AND #state = :in_flight AND #expires > :now',
          ExpressionAttributeNames: this.pick('#token', '#state', '#expires', ...placeholders),
          ExpressionAttributeValues: {
            ...values,
            ':token': { S: token },
            ':in_flight': { S: 'in_flight' },
            ':now': { N: String(now) },
          },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailed(error)) return false;
      throw error;
    }
  }

  private pick(...placeholders: string[]): Record<string, string> {
    const picked: Record<string, string> = {};
    for (const placeholder of placeholders) picked[placeholder] = this.names[placeholder]!;
    return picked;
  }
}

/** DynamoDB's TTL attribute: whole epoch seconds, rounded up so that it never deletes early. */
function ttlSeconds(expiresAtMs: number): number {
  return Math.ceil(expiresAtMs / 1000);
}

function isConditionFailed(error: unknown): error is Error & { Item?: Item } {
  return (error as { name?: unknown } | null)?.name === 'ConditionalCheckFailedException';
}

/** The item returned with a failed condition; `undefined` when `error` is something else. */
function conditionFailedItem(error: unknown): Item | undefined {
  if (!isConditionFailed(error)) return undefined;
  if (error.Item === undefined) {
    throw new Error(
      '[idem] [dynamodb] a conditional write failed without returning the item that blocked it',
      {
        cause: error,
      },
    );
  }
  return error.Item;
}

function isItemTooLarge(error: unknown): boolean {
  const { name, message } = (error ?? {}) as { name?: unknown; message?: unknown };
  return name === 'ValidationException' && typeof message === 'string' && /item size/i.test(message);
}
