import {
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  UpdateTimeToLiveCommand,
  type UpdateTimeToLiveCommandInput,
} from '@aws-sdk/client-dynamodb';
import { attributeNames } from './codec.js';
import type { DynamoDBStoreOptions } from './store.js';

/** What a table definition depends on: the same options the store takes. */
export type TableOptions = Pick<DynamoDBStoreOptions, 'table' | 'attributes' | 'sortKey'>;

/** Options of {@link createTable}. */
export interface CreateTableOptions extends TableOptions {
  /** The client to call `CreateTable`, `DescribeTable`, `DescribeTimeToLive` and `UpdateTimeToLive` with. */
  client: DynamoDBClient;
  /** How long to wait for the table to become `ACTIVE`, in ms. Default 120 000. */
  timeoutMs?: number | undefined;
}

/**
 * The table idem needs, as the two API requests that make it: `CreateTable` (partition key `S`,
 * optional sort key `S`, on-demand billing) and `UpdateTimeToLive` (TTL on the epoch-seconds
 * attribute). For infrastructure-as-code users, the README shows the same table for CloudFormation,
 * CDK and Terraform.
 */
export function tableDefinition(options: TableOptions): {
  createTable: CreateTableCommandInput;
  timeToLive: UpdateTimeToLiveCommandInput;
} {
  const names = attributeNames(options.attributes);
  const { sortKey } = options;
  return {
    createTable: {
      TableName: options.table,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [
        { AttributeName: names.key, AttributeType: 'S' },
        ...(sortKey ? [{ AttributeName: sortKey.attribute, AttributeType: 'S' as const }] : []),
      ],
      KeySchema: [
        { AttributeName: names.key, KeyType: 'HASH' },
        ...(sortKey ? [{ AttributeName: sortKey.attribute, KeyType: 'RANGE' as const }] : []),
      ],
    },
    timeToLive: {
      TableName: options.table,
      TimeToLiveSpecification: { AttributeName: names.ttl, Enabled: true },
    },
  };
}

/**
 * Create the table (on-demand billing), wait until it is `ACTIVE`, and turn on TTL deletion on the
 * TTL attribute. Safe to call again: an existing table is left as it is, and TTL is enabled if it is
 * not yet. Meant for development, tests and scripts; production tables usually come from your
 * infrastructure code (see the README).
 *
 * @returns whether the table was created by this call.
 */
export async function createTable(options: CreateTableOptions): Promise<{ created: boolean }> {
  const { client } = options;
  const definition = tableDefinition(options);
  let created = true;
  try {
    await client.send(new CreateTableCommand(definition.createTable));
  } catch (error) {
    if ((error as { name?: unknown } | null)?.name !== 'ResourceInUseException') throw error;
    created = false;
  }
  await waitUntilActive(client, options.table, options.timeoutMs ?? 120_000);
  const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: options.table }));
  const status = ttl.TimeToLiveDescription?.TimeToLiveStatus;
  const wanted = definition.timeToLive.TimeToLiveSpecification?.AttributeName;
  if (status !== 'ENABLED' && status !== 'ENABLING') {
    await client.send(new UpdateTimeToLiveCommand(definition.timeToLive));
  } else if (ttl.TimeToLiveDescription?.AttributeName !== wanted) {
    // DynamoDB allows one TTL attribute per table; switching it is a deliberate, slow operation.
    throw new Error(
      `[idem] [dynamodb] table ${options.table} has TTL on attribute ${ttl.TimeToLiveDescription?.AttributeName}, ` +
        `but the store writes expiry seconds to ${wanted}`,
    );
  }
  return { created };
}

async function waitUntilActive(client: DynamoDBClient, table: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: table }));
    if (Table?.TableStatus === 'ACTIVE') return;
    if (Date.now() > deadline) {
      throw new Error(
        `[idem] [dynamodb] table ${table} is still ${Table?.TableStatus} after ${timeoutMs} ms`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
