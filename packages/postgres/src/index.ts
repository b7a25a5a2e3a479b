export {
  type PostgresStore,
  type PostgresStoreOptions,
  postgresStore,
} from './postgres-store.js';
export { DEFAULT_TABLE, migrationSql, quoteIdentifier, type TableOptions } from './schema.js';
export type { Sweeper, SweeperOptions, SweepOptions } from './sweeper.js';
