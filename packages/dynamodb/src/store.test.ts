import { randomBytes } from 'node:crypto';
import {
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import {
  IdempotencyEngine,
  IdempotencyError,
  type IdempotencyRecord,
  isIdempotencyError,
  type StoredResponse,
} from '@idem/core';
import { makeClaim, makeResponse, uniqueKey } from '@idem/store-test-suite';
import { freePort, SilentServer } from '@idem/test-services';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { itemBytes } from './codec.js';
import { createLocalTable, dropLocalTable, localClient } from './local-table.js';
import { type DynamoDBStore, type DynamoDBStoreOptions, dynamodbStore } from './store.js';
import { createTable } from './table.js';

const LONG = 60_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Incompressible bytes, as a plain Uint8Array (what the store hands back). */
const random = (length: number) => new Uint8Array(randomBytes(length));

let client: DynamoDBClient;
let table: string;
let store: DynamoDBStore;
const tables: string[] = [];

beforeAll(async () => {
  client = await localClient();
  table = await createLocalTable(client);
  tables.push(table);
  store = dynamodbStore({ client, table });
});

afterAll(async () => {
  for (const name of tables) await dropLocalTable(client, name);
  client.destroy();
});

/** Names of the commands sent through `target`, one per `send` (the SDK's retries are not counted). */
function recordCommands(target: DynamoDBClient): string[] {
  const sent: string[] = [];
  target.middlewareStack.add(
    (next, context) => (args) => {
      sent.push(context.commandName ?? '?');
      return next(args);
    },
    { step: 'initialize', name: 'idemTestRecordCommands' },
  );
  return sent;
}

/** Counts HTTP attempts: added inside the SDK's retry loop. */
function countAttempts(target: DynamoDBClient): { count: number } {
  const attempts = { count: 0 };
  target.middlewareStack.add(
    (next) => (args) => {
      attempts.count++;
      return next(args);
    },
    { step: 'finalizeRequest', priority: 'low', name: 'idemTestCountAttempts' },
  );
  return attempts;
}

const rawItem = async (key: string) =>
  (await client.send(new GetItemCommand({ TableName: table, Key: store.itemKey(key), ConsistentRead: true })))
    .Item;

const respond = (body: string | Uint8Array, status = 200): StoredResponse => ({
  status,
  headers: [['content-type', 'application/json']],
  body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
});

async function completeWith(response: StoredResponse, target: DynamoDBStore = store, fingerprint = 'fp') {
  const key = uniqueKey('size');
  const claim = makeClaim(fingerprint);
  expect(await target.acquire(key, claim)).toEqual({ acquired: true });
  expect(await target.complete(key, claim.token, response, LONG)).toBe(true);
  return key;
}

describe('round trips', () => {
  it('costs 2 requests for a new request, 1 for a replay and 1 for a conflict', async () => {
    const counted = await localClient();
    const sent = recordCommands(counted);
    const engine = new IdempotencyEngine({ store: dynamodbStore({ client: counted, table }) });
    const request = { storageKey: uniqueKey('trips'), fingerprint: 'fp' };
    const settle = () => respond('{"id":1}', 201);

    const first = await engine.run(request, async () => 'done', settle);
    expect(first.replayed).toBe(false);
    expect(sent.splice(0)).toEqual(['PutItemCommand', 'UpdateItemCommand']);

    const replay = await engine.run(request, async () => 'again', settle);
    expect(replay).toEqual({ replayed: true, response: respond('{"id":1}', 201) });
    expect(sent.splice(0)).toEqual(['PutItemCommand']);

    const busy = { storageKey: uniqueKey('trips-busy'), fingerprint: 'fp' };
    let conflict: unknown;
    let conflictCommands: string[] = [];
    await engine.run(
      busy,
      async () => {
        sent.splice(0);
        conflict = await engine.run(busy, async () => 'never', settle).catch((error: unknown) => error);
        conflictCommands = sent.splice(0);
      },
      () => null,
    );
    expect(isIdempotencyError(conflict, 'in_flight')).toBe(true);
    expect(conflictCommands).toEqual(['PutItemCommand']);
    counted.destroy();
  });

  it('recognises its own claim when an SDK retry repeats a PutItem that had succeeded', async () => {
    const flaky = await localClient({ maxAttempts: 3 });
    const attempts = countAttempts(flaky);
    let lost = false;
    // The first PutItem reaches DynamoDB, but its answer is lost: the SDK retries the same claim.
    flaky.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        if (context.commandName === 'PutItemCommand' && !lost) {
          lost = true;
          throw Object.assign(new Error('answer lost'), { name: 'TimeoutError', $metadata: {} });
        }
        return result;
      },
      { step: 'finalizeRequest', priority: 'low', name: 'idemTestLoseAnswer' },
    );
    const flakyStore = dynamodbStore({ client: flaky, table });
    const key = uniqueKey('retried-claim');
    const claim = makeClaim('fp');
    expect(await flakyStore.acquire(key, claim)).toEqual({ acquired: true });
    expect(attempts.count).toBe(2);
    expect(await store.get(key)).toMatchObject({ state: 'in_flight', token: claim.token });
    expect((await store.acquire(key, makeClaim('fp'))).acquired).toBe(false);
    flaky.destroy();
  });
});

describe('concurrency', () => {
  it('runs the work exactly once for 50 concurrent requests through the engine', async () => {
    const engine = new IdempotencyEngine({ store });
    const request = { storageKey: uniqueKey('engine-50'), fingerprint: 'fp' };
    let executions = 0;
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () =>
        engine.run(
          request,
          async () => {
            executions++;
            await sleep(300);
            return 'ran';
          },
          () => respond('{"ran":true}'),
        ),
      ),
    );
    expect(executions).toBe(1);
    const ran = results.filter((r) => r.status === 'fulfilled' && !r.value.replayed);
    expect(ran).toHaveLength(1);
    for (const result of results) {
      if (result.status === 'rejected') expect(isIdempotencyError(result.reason, 'in_flight')).toBe(true);
      else if (result.value.replayed) expect(result.value.response).toEqual(respond('{"ran":true}'));
    }
    expect((await store.get(request.storageKey))?.state).toBe('completed');
  });
});

describe('clocks', () => {
  // Every time the store uses comes from its `now` (DynamoDB has no clock a condition can read), so a
  // hand-moved clock makes these cases exact.
  let clock = Date.now();
  const at = (offsetMs: number, options: Partial<DynamoDBStoreOptions> = {}) =>
    dynamodbStore({ client, table, now: () => clock + offsetMs, ...options });

  it('never lets a server whose clock runs ahead by up to clockSkewMs take over a live lease', async () => {
    const key = uniqueKey('skew');
    const holder = makeClaim('fp', { leaseMs: 5_000 });
    expect(await at(0).acquire(key, holder)).toEqual({ acquired: true });
    clock += 4_999; // the holder's lease still has 1 ms to run
    expect(await at(1_000, { clockSkewMs: 1_000 }).acquire(key, makeClaim('fp'))).toMatchObject({
      acquired: false,
      record: { state: 'in_flight', token: holder.token },
    });
    // Without the margin, the same clock takes over a lease its holder still counts as live.
    const reckless = makeClaim('fp');
    expect(await at(1_000, { clockSkewMs: 0 }).acquire(key, reckless)).toEqual({ acquired: true });
    expect(await at(0).complete(key, holder.token, makeResponse(), LONG)).toBe(false);
    expect(await at(0).get(key)).toMatchObject({ token: reckless.token });
  });

  it('takes a lease over exactly clockSkewMs after it ended on the taker clock', async () => {
    const key = uniqueKey('skew-edge');
    const taker = at(0, { clockSkewMs: 400 });
    await taker.acquire(key, makeClaim('fp', { leaseMs: 300 }));
    clock += 699;
    expect((await taker.acquire(key, makeClaim('fp'))).acquired).toBe(false);
    clock += 1;
    const next = makeClaim('fp');
    expect(await taker.acquire(key, next)).toEqual({ acquired: true });
    expect(await taker.get(key)).toMatchObject({ state: 'in_flight', token: next.token });
  });

  it('keeps ms expiry and epoch-second TTL attributes, and ignores expired items DynamoDB still holds', async () => {
    const key = uniqueKey('late-ttl');
    const clocked = at(0);
    const start = clock;
    await clocked.acquire(key, makeClaim('fp', { leaseMs: 300, ttlMs: 300 }));
    const item = await rawItem(key);
    expect(item?.['expiresAt']).toEqual({ N: String(start + 300) });
    expect(item?.['leaseExpiresAt']).toEqual({ N: String(start + 300) });
    expect(item?.['ttl']).toEqual({ N: String(Math.ceil((start + 300) / 1000)) });
    clock += 300;
    expect(await rawItem(key)).toBeDefined();
    expect(await clocked.get(key)).toBeNull();
    expect(await clocked.extend(key, 'any', LONG)).toBe(false);
    expect(await clocked.acquire(key, makeClaim('other-fp'))).toEqual({ acquired: true });
    expect(await clocked.acquire(key, makeClaim('fp'))).toMatchObject({ acquired: false });
  });

  it('refuses writes by the holder once the record itself has expired', async () => {
    const key = uniqueKey('expired-holder');
    const clocked = at(0);
    const claim = makeClaim('fp', { ttlMs: 300 });
    await clocked.acquire(key, claim);
    clock += 300;
    expect(await clocked.complete(key, claim.token, makeResponse(), LONG)).toBe(false);
    expect(await clocked.extend(key, claim.token, LONG)).toBe(false);
    expect(await clocked.release(key, claim.token, LONG)).toBe(false);
    expect(await clocked.get(key)).toBeNull();
  });
});

describe('item size', () => {
  const tooLarge = (response: StoredResponse): StoredResponse => ({
    ...response,
    body: new Uint8Array(0),
    omitted: 'too_large',
  });

  it('stores a 2 MB incompressible body as too_large, and the engine replays it as not stored', async () => {
    const response = respond(random(2 * 1024 * 1024));
    const key = await completeWith(response);
    expect((await store.get(key))?.response).toEqual(tooLarge(response));
    const engine = new IdempotencyEngine({ store });
    const replay = await engine.run(
      { storageKey: key, fingerprint: 'fp' },
      async () => 'never',
      () => null,
    );
    expect(replay).toEqual({ replayed: true, response: tooLarge(response) });
  });

  it('gzips a large compressible body and keeps it byte-exact', async () => {
    const row = (i: number) => `{"id":${i},"name":"order ${i}","status":"paid","items":[1,2,3]}`;
    const text = `[${Array.from({ length: 40_000 }, (_, i) => row(i)).join(',')}]`;
    const response = respond(text);
    expect(response.body.length).toBeGreaterThan(2 * 1024 * 1024);
    const key = await completeWith(response);
    const stored = (await rawItem(key))?.['response']?.M;
    expect(stored?.['encoding']?.S).toBe('gzip');
    expect(stored?.['body']?.B?.length).toBeLessThan(400 * 1024);
    const record = await store.get(key);
    expect(record?.response?.omitted).toBeUndefined();
    expect(Buffer.compare(Buffer.from(record!.response!.body), Buffer.from(response.body))).toBe(0);
    expect(record?.response?.headers).toEqual(response.headers);
  });

  it('stores small and incompressible bodies as they are', async () => {
    for (const body of [new TextEncoder().encode('{"small":true}'), random(100_000)]) {
      const key = await completeWith(respond(body));
      expect((await rawItem(key))?.['response']?.M?.['encoding']).toBeUndefined();
      expect((await store.get(key))?.response?.body).toEqual(body);
    }
  });

  it('keeps an incompressible body just under the limit, and drops one just over it', async () => {
    const under = respond(random(395 * 1024));
    const underKey = await completeWith(under);
    expect((await store.get(underKey))?.response).toEqual(under);
    const over = respond(random(405 * 1024));
    const overKey = await completeWith(over);
    expect((await store.get(overKey))?.response).toEqual(tooLarge(over));
  });

  it('falls back to too_large when DynamoDB refuses an item the estimate let through', async () => {
    // The store cannot see the fingerprint when completing: an outsized one defeats the estimate.
    const response = respond(random(395 * 1024));
    const key = await completeWith(response, store, 'f'.repeat(20_000));
    const record = await store.get(key);
    expect(record).toMatchObject({ state: 'completed', response: { omitted: 'too_large' } });
    expect(record?.response?.headers).toEqual([]);
  });

  it('estimates item sizes from above', async () => {
    const key = await completeWith(respond(random(50_000)));
    const item = (await rawItem(key))!;
    expect(itemBytes(item)).toBeGreaterThanOrEqual(50_000);
    expect(itemBytes(item)).toBeLessThan(50_000 + 1_000);
  });
});

describe('corrupt records', () => {
  const writeRaw = (key: string, attributes: Record<string, unknown>) =>
    client.send(
      new PutItemCommand({
        TableName: table,
        Item: { ...store.itemKey(key), ...(attributes as Record<string, never>) },
      }),
    );
  const live = { N: String(Date.now() + LONG) };

  it.each([
    ['garbage attributes', { junk: { S: 'x' } }],
    [
      'an unknown state',
      { state: { S: 'done' }, expiresAt: live, fingerprint: { S: 'f' }, token: { S: 't' } },
    ],
    ['a non-numeric expiry', { state: { S: 'failed' }, expiresAt: { S: 'soon' } }],
    [
      'a completed record with broken headers',
      {
        state: { S: 'completed' },
        expiresAt: live,
        leaseExpiresAt: live,
        fingerprint: { S: 'fp' },
        token: { S: 't' },
        response: { M: { status: { N: '200' }, headers: { S: '{nope' }, body: { B: new Uint8Array(1) } } },
      },
    ],
    [
      'a completed record whose gzip body is damaged',
      {
        state: { S: 'completed' },
        expiresAt: live,
        leaseExpiresAt: live,
        fingerprint: { S: 'fp' },
        token: { S: 't' },
        response: {
          M: {
            status: { N: '200' },
            headers: { S: '[]' },
            body: { B: new Uint8Array([0x1f, 0x8b, 8, 0, 1, 2, 3]) },
            encoding: { S: 'gzip' },
          },
        },
      },
    ],
  ])('reports %s as record_corrupt naming the key', async (_, attributes) => {
    const key = uniqueKey('corrupt');
    await writeRaw(key, attributes);
    const failure = await store.get(key).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(IdempotencyError);
    expect(failure).toMatchObject({ code: 'record_corrupt', details: { key, store: 'dynamodb' } });
    expect((failure as Error).message).toContain(key);
    await expect(store.acquire(key, makeClaim('fp'))).rejects.toMatchObject({ code: 'record_corrupt' });
  });

  it('surfaces record_corrupt through the engine, without running the work', async () => {
    const key = uniqueKey('corrupt-engine');
    await writeRaw(key, { junk: { S: 'x' } });
    let ran = false;
    const engine = new IdempotencyEngine({ store });
    const run = engine.run(
      { storageKey: key, fingerprint: 'fp' },
      async () => (ran = true),
      () => null,
    );
    await expect(run).rejects.toMatchObject({ code: 'record_corrupt' });
    expect(ran).toBe(false);
  });
});

describe('failures', () => {
  let closedPort: number;
  beforeAll(async () => {
    closedPort = await freePort();
  });

  const unreachable = async () => {
    const dead = await localClient({ endpoint: `http://127.0.0.1:${closedPort}`, maxAttempts: 3 });
    return { dead, attempts: countAttempts(dead), deadStore: dynamodbStore({ client: dead, table }) };
  };

  it('throws the final network error after the SDK retries', async () => {
    const { dead, attempts, deadStore } = await unreachable();
    const failure = await deadStore.acquire(uniqueKey('down'), makeClaim()).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(Error);
    expect(failure).not.toBeInstanceOf(IdempotencyError);
    expect(failure).toMatchObject({ code: 'ECONNREFUSED', $metadata: { attempts: 3 } });
    expect(attempts.count).toBe(3);
    await expect(deadStore.get(uniqueKey('down'))).rejects.toThrow();
    dead.destroy();
  });

  it('becomes store_unavailable in the engine, before any work runs', async () => {
    const { dead, deadStore } = await unreachable();
    let ran = false;
    const engine = new IdempotencyEngine({ store: deadStore, storeTimeoutMs: 10_000 });
    const failure = await engine
      .run(
        { storageKey: uniqueKey('down-engine'), fingerprint: 'fp' },
        async () => (ran = true),
        () => null,
      )
      .catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'store_unavailable', details: { store: 'dynamodb' } });
    expect((failure as Error).cause).toBeInstanceOf(Error);
    expect(ran).toBe(false);
    dead.destroy();
  });

  it("fails a call to an endpoint that accepts and never answers, with the README's client settings", async () => {
    // Without `throwOnRequestTimeout` the SDK's handler only logs that `requestTimeout` passed, and the
    // call waits for as long as the endpoint hangs.
    const silent = await SilentServer.start();
    const hung = await localClient({
      endpoint: `http://127.0.0.1:${silent.port}`,
      maxAttempts: 2,
      requestHandler: { connectionTimeout: 300, requestTimeout: 300, throwOnRequestTimeout: true },
    });
    try {
      const failure = await dynamodbStore({ client: hung, table })
        .get(uniqueKey('silent'))
        .catch((error: unknown) => error);
      expect(failure).toMatchObject({ name: 'TimeoutError', $metadata: { attempts: 2 } });
      expect(silent.accepted).toBeGreaterThan(0);
    } finally {
      hung.destroy();
      await silent.close();
    }
  });

  it('honours the SDK retries on throttling and then succeeds', async () => {
    const throttled = await localClient({ maxAttempts: 3 });
    const attempts = countAttempts(throttled);
    let refusals = 2;
    throttled.middlewareStack.add(
      (next) => (args) => {
        if (refusals-- > 0) {
          throw Object.assign(new Error('Rate of requests exceeds the allowed throughput.'), {
            name: 'ProvisionedThroughputExceededException',
            $fault: 'client',
            $metadata: { httpStatusCode: 400 },
          });
        }
        return next(args);
      },
      { step: 'finalizeRequest', priority: 'low', name: 'idemTestThrottle' },
    );
    const key = uniqueKey('throttled');
    const claim = makeClaim();
    expect(await dynamodbStore({ client: throttled, table }).acquire(key, claim)).toEqual({ acquired: true });
    expect(attempts.count).toBe(3);
    expect((await store.get(key))?.token).toBe(claim.token);
    throttled.destroy();
  });
});

describe('tables and attribute names', () => {
  const attributes = {
    key: 'PK',
    ttl: 'expires_s',
    state: 'st',
    fingerprint: 'fp',
    token: 'tok',
    leaseExpiresAt: 'lease_ms',
    expiresAt: 'expires_ms',
    response: 'res',
  };
  const sortKey = { attribute: 'SK', value: 'IDEMPOTENCY' };

  it('creates an on-demand table with TTL, idempotently, and works with custom names and a sort key', async () => {
    const name = await createLocalTable(client, { attributes, sortKey });
    tables.push(name);
    const { Table } = await client.send(new DescribeTableCommand({ TableName: name }));
    expect(Table?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    expect(Table?.KeySchema).toEqual([
      { AttributeName: 'PK', KeyType: 'HASH' },
      { AttributeName: 'SK', KeyType: 'RANGE' },
    ]);
    const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: name }));
    expect(ttl.TimeToLiveDescription).toMatchObject({
      TimeToLiveStatus: 'ENABLED',
      AttributeName: 'expires_s',
    });
    expect(await createTable({ client, table: name, attributes, sortKey })).toEqual({ created: false });

    const custom = dynamodbStore({ client, table: name, attributes, sortKey });
    const key = uniqueKey('custom');
    const claim = makeClaim('fp-1');
    await custom.acquire(key, claim);
    expect(await custom.complete(key, claim.token, makeResponse(), LONG)).toBe(true);
    const { Item } = await client.send(
      new GetItemCommand({ TableName: name, Key: { PK: { S: key }, SK: { S: 'IDEMPOTENCY' } } }),
    );
    expect(Object.keys(Item ?? {}).sort()).toEqual(
      ['PK', 'SK', 'expires_ms', 'expires_s', 'fp', 'lease_ms', 'res', 'st', 'tok'].sort(),
    );
    expect((await custom.get(key))?.response).toEqual(makeResponse());
    expect(await custom.acquire(key, makeClaim('fp-1'))).toMatchObject({
      acquired: false,
      record: { state: 'completed', token: claim.token } satisfies Partial<IdempotencyRecord>,
    });
  });

  it('refuses to reuse a table whose TTL is on another attribute', async () => {
    const name = await createLocalTable(client);
    tables.push(name);
    await expect(createTable({ client, table: name, attributes: { ttl: 'other' } })).rejects.toThrow(
      /TTL on attribute ttl/,
    );
  });

  it('rejects clashing attribute names and bad options', () => {
    expect(() => dynamodbStore({ client, table, attributes: { token: 'state' } })).toThrow(TypeError);
    expect(() => dynamodbStore({ client, table, sortKey: { attribute: 'pk', value: 'x' } })).toThrow(
      TypeError,
    );
    expect(() => dynamodbStore({ client, table, clockSkewMs: -1 })).toThrow(TypeError);
    expect(() => dynamodbStore({ client, table, sortKey: { attribute: 'sk', value: '' } })).toThrow(
      TypeError,
    );
    expect(() => dynamodbStore({ client, table: '' })).toThrow(TypeError);
    // Named like every idem error, and the store's.
    expect(() => dynamodbStore({ client, table: '' })).toThrow(
      /^\[idem\] \[dynamodb\] options.table is required$/,
    );
  });
});
