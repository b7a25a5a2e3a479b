import { createHash } from 'node:crypto';
import {
  type AcquireResult,
  type Claim,
  IdempotencyError,
  type IdempotencyRecord,
  type Operation,
  type Store,
  type StoredResponse,
} from '@idem/core';
import type { ClientBase, Pool, PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { decodeRecord, encodeHeaders, type RecordRow } from './record-codec.js';
import { type Migration, migration, type TableOptions, tableNames } from './schema.js';
import { type Statements, statements } from './statements.js';
import {
  positiveInteger,
  SWEEP_DEFAULTS,
  type Sweeper,
  type SweeperOptions,
  type SweepOptions,
  startSweeper,
} from './sweeper.js';

/** Options of {@link postgresStore}. */
export interface PostgresStoreOptions extends TableOptions {
  /**
   * The `pg` Pool the store queries through (recommended), or a connected `Client`. The store never
   * creates, connects or ends it. Give the pool an `error` listener, as `pg` asks: an idle connection
   * that breaks is reported there (and dropped from the pool).
   */
  pool: Pool | ClientBase;
  /**
   * Client-side timeout of each store statement, in ms (pg's `query_timeout`): a statement that gets
   * no answer in time fails, and the pool drops its connection instead of keeping a hung one.
   * Default 5000 (a little over the engine's `storeTimeoutMs`); `0` leaves it to the pool's config.
   * It starts once the statement has a connection: the wait for one is bounded by the pool's
   * `connectionTimeoutMillis` (pg's default, 0, waits forever). For a server-side bound, set
   * `statement_timeout` on the pool or the database role.
   */
  queryTimeoutMs?: number | undefined;
  /**
   * Send the store's statements as named prepared statements (default `true`): each connection parses
   * and plans a statement once, then only binds and executes it (an acquire takes about half the time
   * it takes unnamed; see the README's benchmark). Set `false` behind a pooler in transaction mode that does
   * not track prepared statements (PgBouncer before 1.21, or with `max_prepared_statements = 0`): every
   * statement is then sent unnamed and parsed and planned on every call.
   */
  preparedStatements?: boolean | undefined;
}

/**
 * A `Store` on PostgreSQL, plus what only a SQL database can offer: the migration, a sweeper for
 * expired rows, and completion inside the caller's own transaction.
 */
export interface PostgresStore extends Store {
  /** Always `'postgres'`. */
  readonly name: 'postgres';
  /** The table, quoted and schema-qualified as it appears in the store's SQL. */
  readonly table: string;

  /**
   * Create the schema (when one is configured), the table and its expiry index if missing. Idempotent
   * and safe to run from several instances at once (it takes a transaction-scoped advisory lock).
   * It first looks up which of them exist and sends DDL only for the missing ones, so when all are in
   * place it needs no privilege beyond `USAGE` on the schema: an application role that may only use
   * the table can run it on every start.
   * The same SQL ships as `schema.sql` and is returned by `migrationSql()` for your own migrations.
   */
  migrate(): Promise<void>;

  /**
   * Delete up to `limit` expired rows in one short statement, skipping rows another session has
   * locked (`FOR UPDATE SKIP LOCKED`), so that several instances may sweep at once. Expired rows are
   * already treated as absent by every operation; sweeping only reclaims space.
   * @returns how many rows were deleted; fewer than `limit` means none are left for now.
   */
  sweep(options?: SweepOptions): Promise<number>;

  /** Sweep every `intervalMs` in the background (unref'd timer) until `stop()`. */
  startSweeper(options?: SweeperOptions): Sweeper;

  /**
   * Complete `operation`'s record with `response` on `client`, the caller's connection inside its own
   * `BEGIN`, so that the record and the caller's writes commit together or not at all. On success
   * calls `operation.markCompleted()` so the engine does not complete the record again.
   *
   * Call it last, right before `COMMIT`: it takes the record's row lock until the transaction ends.
   * If the transaction can still fail after it, prefer {@link PostgresStore.completeInTransaction},
   * which marks the operation only once the commit succeeded (see the README).
   *
   * Does nothing when `operation.claimed` is false (fail-open ran the work without a record).
   * @throws IdempotencyError `in_flight` when the record is no longer this operation's (another holder
   *   took over after the lease ran out, or it expired): roll the transaction back.
   */
  completeWithin(client: ClientBase, operation: Operation, response: StoredResponse): Promise<void>;

  /**
   * Run `work` in a transaction on a connection of the pool, complete `operation`'s record in that
   * same transaction with `settle(value)`, commit, and only then call `operation.markCompleted()`.
   * When anything fails (the work, the completion, the commit) the transaction is rolled back and the
   * error is thrown: the engine then releases the record, so a retry runs the work again. Either the
   * work's writes and the completed record both exist, or neither does.
   *
   * Needs the store to be built on a `Pool`. When `operation.claimed` is false (fail-open) the work
   * still runs in a transaction, and nothing is completed.
   * @throws whatever `work` or `settle` threw; the database's error; IdempotencyError `in_flight` when
   *   the record was taken over meanwhile (the work's writes are rolled back).
   */
  completeInTransaction<T>(
    operation: Operation,
    work: (client: PoolClient) => Promise<T>,
    settle: (value: T) => StoredResponse | Promise<StoredResponse>,
  ): Promise<T>;
}

const DEFAULT_QUERY_TIMEOUT_MS = 5_000;
/**
 * How many times `acquire` sends its statement when a concurrent claim keeps changing the record
 * between the statement's snapshot and its write (each time, another claim committed meanwhile).
 */
const ACQUIRE_ATTEMPTS = 5;

/** pg honours `query_timeout` per query; @types/pg does not declare it on `QueryConfig`. */
type TimedQueryConfig = QueryConfig & { query_timeout?: number };

/** Something that runs a query the way pg's Pool and clients do. */
type Queryable = Pool | ClientBase;

/**
 * Make a Store over a `pg` Pool (or Client) you pass in. Run `store.migrate()` once (or apply
 * `schema.sql`) before use.
 *
 * ```ts
 * const store = postgresStore({ pool: new pg.Pool({ connectionString }) });
 * await store.migrate();
 * ```
 */
export function postgresStore(options: PostgresStoreOptions): PostgresStore {
  return new PgStore(options);
}

class PgStore implements PostgresStore {
  readonly name = 'postgres' as const;
  readonly table: string;
  private readonly pool: Queryable;
  private readonly migration: Migration;
  private readonly sql: Statements;
  /** The prepared statement name of each statement, or `undefined` when statements are sent unnamed. */
  private readonly statementNames: Readonly<Record<keyof Statements, string>> | undefined;
  private readonly queryTimeoutMs: number;

  constructor(options: PostgresStoreOptions) {
    if (!options?.pool || typeof options.pool.query !== 'function') {
      throw new TypeError('[idem] [postgres] options.pool must be a pg Pool or Client');
    }
    this.pool = options.pool;
    const names = tableNames(options);
    this.table = names.qualified;
    this.sql = statements(names);
    this.statementNames = (options.preparedStatements ?? true) ? statementNames(this.sql) : undefined;
    this.migration = migration(options);
    const timeout = options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
    this.queryTimeoutMs = timeout === 0 ? 0 : positiveInteger('queryTimeoutMs', timeout);
  }

  async migrate(): Promise<void> {
    // PostgreSQL checks the privilege to create before it looks whether the object exists, so even
    // `CREATE ... IF NOT EXISTS` of an object in place fails for a role that may only use the table
    // (no CREATE on the database or schema, not the table's owner). Only what is missing is created.
    const { rows } = await this.query<{
      schema_exists: boolean;
      table_exists: boolean;
      index_exists: boolean;
    }>(this.pool, this.migration.existing, [...this.migration.values]);
    const existing = rows[0];
    const { steps } = this.migration;
    const missing = [
      existing?.schema_exists ? null : steps.schema,
      existing?.table_exists ? null : steps.table,
      existing?.index_exists ? null : steps.index,
    ].filter((step) => step !== null);
    if (missing.length === 0) return;
    // Sent without parameters, pg uses the simple protocol: the statements run as one implicit
    // transaction, so the advisory lock serialises concurrent migrations until they commit (the
    // steps keep IF NOT EXISTS for a concurrent one that created them after the check).
    await this.pool.query(
      `SELECT pg_advisory_xact_lock(hashtext('@idem/postgres migrate'));\n${missing.join('\n')}`,
    );
  }

  async acquire(key: string, claim: Claim): Promise<AcquireResult> {
    const params = [key, claim.fingerprint, claim.token, claim.leaseMs, claim.ttlMs];
    for (let attempt = 1; attempt <= ACQUIRE_ATTEMPTS; attempt++) {
      const { rows } = await this.run<RecordRow & { acquired: boolean }>(this.pool, 'acquire', params);
      const row = rows[0];
      if (row) return row.acquired ? { acquired: true } : { acquired: false, record: decodeRecord(row, key) };
      // No row: a concurrent claim committed a record that refuses this one after this statement's
      // snapshot was taken; the next statement's snapshot has it.
    }
    throw new Error(
      `[idem] [postgres] acquire of ${key} met a record changed by another claim ${ACQUIRE_ATTEMPTS} times`,
    );
  }

  complete(key: string, token: string, response: StoredResponse, ttlMs: number): Promise<boolean> {
    return this.completeOn(this.pool, key, token, response, ttlMs);
  }

  async release(key: string, token: string, ttlMs: number): Promise<boolean> {
    const result = await this.run(this.pool, 'release', [key, token, ttlMs]);
    return result.rowCount === 1;
  }

  async extend(key: string, token: string, leaseMs: number): Promise<boolean> {
    const result = await this.run(this.pool, 'extend', [key, token, leaseMs]);
    return result.rowCount === 1;
  }

  async get(key: string): Promise<IdempotencyRecord | null> {
    const { rows } = await this.run<RecordRow>(this.pool, 'get', [key]);
    const row = rows[0];
    return row ? decodeRecord(row, key) : null;
  }

  async delete(key: string): Promise<void> {
    await this.run(this.pool, 'delete', [key]);
  }

  async sweep(options: SweepOptions = {}): Promise<number> {
    const limit = positiveInteger('limit', options.limit ?? SWEEP_DEFAULTS.limit);
    const result = await this.run(this.pool, 'sweep', [limit]);
    return result.rowCount ?? 0;
  }

  startSweeper(options: SweeperOptions = {}): Sweeper {
    return startSweeper((limit) => this.sweep({ limit }), options);
  }

  async completeWithin(client: ClientBase, operation: Operation, response: StoredResponse): Promise<void> {
    if (isPool(client)) {
      throw new TypeError(
        '[idem] [postgres] completeWithin needs the client of your transaction (pool.connect()), not the pool',
      );
    }
    if (!operation.claimed) return;
    await this.completeOrThrow(client, operation, response);
    operation.markCompleted();
  }

  async completeInTransaction<T>(
    operation: Operation,
    work: (client: PoolClient) => Promise<T>,
    settle: (value: T) => StoredResponse | Promise<StoredResponse>,
  ): Promise<T> {
    if (!isPool(this.pool)) {
      throw new TypeError('[idem] [postgres] completeInTransaction needs a store built on a pg Pool');
    }
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await this.query(client, 'BEGIN', []);
      const value = await work(client);
      if (operation.claimed) await this.completeOrThrow(client, operation, await settle(value));
      const commit = await this.query(client, 'COMMIT', []);
      // COMMIT of a transaction that already failed (an error the work caught) answers ROLLBACK.
      if (commit.command !== 'COMMIT') {
        throw new Error('[idem] [postgres] the transaction was rolled back: a statement in it had failed');
      }
      if (operation.claimed) operation.markCompleted();
      return value;
    } catch (error) {
      await this.query(client, 'ROLLBACK', []).catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw error;
    } finally {
      // A connection whose rollback failed (or timed out) is in an unknown state: the pool drops it.
      client.release(broken);
    }
  }

  private async completeOrThrow(client: ClientBase, operation: Operation, response: StoredResponse) {
    const { storageKey: key, token, ttlMs } = operation;
    if (!(await this.completeOn(client, key, token, response, ttlMs))) {
      throw new IdempotencyError(
        'in_flight',
        `[postgres] record ${key} is no longer held by this operation (another holder took over, ` +
          'or it expired): roll the transaction back',
        { details: { store: this.name, key, retryAfterSeconds: 1 } },
      );
    }
  }

  private async completeOn(
    target: Queryable,
    key: string,
    token: string,
    response: StoredResponse,
    ttlMs: number,
  ): Promise<boolean> {
    const result = await this.run(target, 'complete', [
      key,
      token,
      ttlMs,
      response.status,
      encodeHeaders(response.headers),
      response.body,
      response.omitted ?? null,
    ]);
    return result.rowCount === 1;
  }

  /** One of the store's statements, prepared (named) unless `preparedStatements` is `false`. */
  private run<R extends QueryResultRow = QueryResultRow>(
    target: Queryable,
    statement: keyof Statements,
    values: unknown[],
  ): Promise<QueryResult<R>> {
    return this.query<R>(target, this.sql[statement], values, this.statementNames?.[statement]);
  }

  private query<R extends QueryResultRow = QueryResultRow>(
    target: Queryable,
    text: string,
    values: unknown[],
    name?: string,
  ): Promise<QueryResult<R>> {
    const config: TimedQueryConfig = { text, values };
    if (name !== undefined) config.name = name;
    if (this.queryTimeoutMs > 0) config.query_timeout = this.queryTimeoutMs;
    return target.query<R>(config);
  }
}

/**
 * A name per statement, derived from its text: `idem_acquire_<16 hex>`. Stores on different tables
 * share a connection without clashing (pg refuses one name for two texts on a connection), and a
 * connection prepares each text once whatever store instance sent it.
 */
function statementNames(sql: Statements): Record<keyof Statements, string> {
  const entries = Object.entries(sql).map(([statement, text]) => [
    statement,
    `idem_${statement}_${createHash('sha256').update(text).digest('hex').slice(0, 16)}`,
  ]);
  return Object.fromEntries(entries) as Record<keyof Statements, string>;
}

function isPool(queryable: Queryable): queryable is Pool {
  return typeof (queryable as Partial<Pool>).totalCount === 'number';
}
