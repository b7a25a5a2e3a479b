import { DeleteTableCommand, DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { DYNAMODB_LOCAL_CREDENTIALS, DYNAMODB_LOCAL_REGION, dynamodbEndpoint } from '@idem/test-services';
import { createTable, type TableOptions } from './table.js';

/**
 * Test support (not exported by the package): clients and throwaway tables on the DynamoDB Local the
 * test run uses. Every test file works in tables of its own, so files never see each other's items.
 */
export async function localClient(config: DynamoDBClientConfig = {}): Promise<DynamoDBClient> {
  return new DynamoDBClient({
    endpoint: await dynamodbEndpoint(),
    region: DYNAMODB_LOCAL_REGION,
    credentials: DYNAMODB_LOCAL_CREDENTIALS,
    ...config,
  });
}

/** A new table with a random name, made by `createTable()`. */
export async function createLocalTable(
  client: DynamoDBClient,
  options: Omit<TableOptions, 'table'> = {},
): Promise<string> {
  const table = `idem-test-${crypto.randomUUID()}`;
  await createTable({ client, table, ...options });
  return table;
}

/** Drop a table made by {@link createLocalTable}. */
export async function dropLocalTable(client: DynamoDBClient, table: string): Promise<void> {
  await client.send(new DeleteTableCommand({ TableName: table }));
}
