import {
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  GetItemCommand,
} from '@aws-sdk/client-dynamodb';
import { makeClaim, uniqueKey } from '@idem/store-test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CreateTableOptions,
  createTable,
  DEFAULT_ATTRIBUTE_NAMES,
  type DynamoDBStoreOptions,
  dynamodbStore,
  tableDefinition,
} from './index.js';
import { createLocalTable, dropLocalTable, localClient } from './local-table.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.

/** An option the caller left unset, typed the way user code has it (`config.skew` of `skew?: number`). */
const unset = <T>(): T | undefined => undefined;

/** Every attribute name given, as `undefined`. */
const unsetNames = (): NonNullable<DynamoDBStoreOptions['attributes']> => ({
  key: unset<string>(),
  ttl: unset<string>(),
  state: unset<string>(),
  fingerprint: unset<string>(),
  token: unset<string>(),
  leaseExpiresAt: unset<string>(),
  expiresAt: unset<string>(),
  response: unset<string>(),
});

let client: DynamoDBClient;
const tables: string[] = [];

beforeAll(async () => {
  client = await localClient();
});

afterAll(async () => {
  for (const table of tables) await dropLocalTable(client, table);
  client.destroy();
});

describe('options given as undefined mean the defaults', () => {
  it('dynamodbStore: every option undefined, each attribute name too, stores under the default names', async () => {
    const table = await createLocalTable(client);
    tables.push(table);
    const options: DynamoDBStoreOptions = {
      client,
      table,
      attributes: unsetNames(),
      sortKey: undefined,
      clockSkewMs: unset<number>(),
      compressMinBytes: unset<number>(),
      now: unset<() => number>(),
    };
    const store = dynamodbStore(options);
    expect(store.attributes).toEqual(DEFAULT_ATTRIBUTE_NAMES);
    expect(store.itemKey('k')).toEqual({ pk: { S: 'k' } });

    const key = uniqueKey('options-undefined');
    const claim = makeClaim();
    const body = new TextEncoder().encode('{"line":"compressible"}'.repeat(100));
    expect(await store.acquire(key, claim)).toEqual({ acquired: true });
    expect(await store.complete(key, claim.token, { status: 201, headers: [], body }, 60_000)).toBe(true);
    const { Item: item } = await client.send(
      new GetItemCommand({ TableName: table, Key: { pk: { S: key } }, ConsistentRead: true }),
    );
    expect(Object.keys(item ?? {}).sort()).toEqual(Object.values(DEFAULT_ATTRIBUTE_NAMES).sort());
    expect(item?.['response']?.M?.['encoding']?.S).toBe('gzip'); // compressMinBytes: 1024
    expect((await store.get(key))?.response?.body).toEqual(body);
  });

  it('dynamodbStore: an attribute name given as undefined keeps its default, the others are used', () => {
    const store = dynamodbStore({ client, table: 'unused', attributes: { key: 'id', ttl: unset<string>() } });
    expect(store.attributes).toEqual({ ...DEFAULT_ATTRIBUTE_NAMES, key: 'id' });
  });

  it('tableDefinition and createTable: the default key and TTL attributes', async () => {
    const table = `idem-test-${crypto.randomUUID()}`;
    const options: CreateTableOptions = {
      client,
      table,
      attributes: unsetNames(),
      sortKey: undefined,
      timeoutMs: unset<number>(),
    };
    expect(tableDefinition(options)).toEqual(tableDefinition({ table }));
    expect(await createTable(options)).toEqual({ created: true });
    tables.push(table);
    const { Table } = await client.send(new DescribeTableCommand({ TableName: table }));
    expect(Table?.KeySchema).toEqual([{ AttributeName: 'pk', KeyType: 'HASH' }]);
    const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: table }));
    expect(ttl.TimeToLiveDescription?.AttributeName).toBe('ttl');
  });
});
