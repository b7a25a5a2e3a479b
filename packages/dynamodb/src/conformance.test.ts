import { GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { testStore } from '@idem/store-test-suite';
import { createLocalTable, dropLocalTable, localClient } from './local-table.js';
import { type DynamoDBStore, dynamodbStore } from './store.js';

testStore({
  name: 'dynamodb',
  createStore: async () => {
    const client = await localClient();
    // The suite's takeover tests wait lease + 150 ms on one clock: no skew margin to allow for.
    return dynamodbStore({ client, table: await createLocalTable(client), clockSkewMs: 0 });
  },
  readRaw: async (store, key) => {
    const { client, table, attributes } = store as DynamoDBStore;
    const { Item } = await client.send(
      new GetItemCommand({
        TableName: table,
        Key: (store as DynamoDBStore).itemKey(key),
        ConsistentRead: true,
      }),
    );
    if (!Item) return null;
    const seconds = Item[attributes.ttl]?.N;
    return { expiresInMs: seconds === undefined ? null : Number(seconds) * 1000 - Date.now() };
  },
  teardown: async (store) => {
    const { client, table } = store as DynamoDBStore;
    await dropLocalTable(client, table);
    client.destroy();
  },
  // A state no record has.
  corruptRecord: async (store, key) => {
    const { client, table, attributes } = store as DynamoDBStore;
    await client.send(
      new UpdateItemCommand({
        TableName: table,
        Key: (store as DynamoDBStore).itemKey(key),
        UpdateExpression: 'SET #state = :bogus',
        ExpressionAttributeNames: { '#state': attributes.state },
        ExpressionAttributeValues: { ':bogus': { S: 'bogus' } },
      }),
    );
  },
  // DynamoDB Local answers in milliseconds once warm, but a cold JVM on a busy machine can take longer.
  timing: { leaseMs: 600, ttlMs: 1_200 },
});
