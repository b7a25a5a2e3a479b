export { DEFAULT_ATTRIBUTE_NAMES, type DynamoDBAttributeNames } from './codec.js';
export { type DynamoDBStore, type DynamoDBStoreOptions, dynamodbStore } from './store.js';
export { type CreateTableOptions, createTable, type TableOptions, tableDefinition } from './table.js';
