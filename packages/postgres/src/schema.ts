/** Where the records live: one table, optionally in a named schema. */
export interface TableOptions {
  /** Table name. Default `"idem_records"`. At most 48 bytes (the index name adds a suffix to it). */
  table?: string | undefined;
  /**
   * Schema (namespace) of the table. Default: none, the table name is left unqualified and the
   * connection's `search_path` decides. `migrate()` creates the schema when it is missing.
   */
  schema?: string | undefined;
}

/** The default table name. */
export const DEFAULT_TABLE = 'idem_records';

/** PostgreSQL cuts identifiers to 63 bytes; the index name is `<table>_expires_at_idx`. */
const MAX_IDENTIFIER_BYTES = 63;
const INDEX_SUFFIX = '_expires_at_idx';

/** Resolved, safely quoted names of the table and its objects. */
export interface TableNames {
  /** `"schema"."table"` or `"table"`, ready to splice into SQL. */
  readonly qualified: string;
  /** The schema, quoted, or `null` when unqualified. */
  readonly schema: string | null;
  /** The expiry index, quoted (unqualified: an index lives in its table's schema). */
  readonly expiryIndex: string;
  /** The raw table name, for lock keys and messages. */
  readonly label: string;
}

/**
 * Quote an identifier for PostgreSQL: wrapped in double quotes, inner quotes doubled, so that any
 * name (spaces, capitals, quotes, reserved words) is taken literally and nothing can be injected.
 */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Validate and quote the configured names. */
export function tableNames(options: TableOptions = {}): TableNames {
  const table = options.table ?? DEFAULT_TABLE;
  checkIdentifier('table', table, MAX_IDENTIFIER_BYTES - INDEX_SUFFIX.length);
  const schema = options.schema === undefined ? null : quoteIdentifier(options.schema);
  if (options.schema !== undefined) checkIdentifier('schema', options.schema, MAX_IDENTIFIER_BYTES);
  const quotedTable = quoteIdentifier(table);
  return {
    qualified: schema === null ? quotedTable : `${schema}.${quotedTable}`,
    schema,
    expiryIndex: quoteIdentifier(table + INDEX_SUFFIX),
    label: options.schema === undefined ? table : `${options.schema}.${table}`,
  };
}

function checkIdentifier(what: string, name: string, maxBytes: number): void {
  if (typeof name !== 'string' || name.length === 0) {
    throw new TypeError(`[idem] [postgres] ${what} name must be a non-empty string`);
  }
  if (name.includes('\0')) throw new TypeError(`[idem] [postgres] ${what} name must not contain NUL`);
  // A longer name would be silently truncated by PostgreSQL and could collide with another one.
  if (new TextEncoder().encode(name).length > maxBytes) {
    throw new TypeError(`[idem] [postgres] ${what} name must be at most ${maxBytes} bytes`);
  }
}

/**
 * The migration: the SQL that creates the record table and its expiry index. Idempotent (`IF NOT
 * EXISTS`), so it may run on every deploy. `schema.sql` in this package is exactly `migrationSql()`
 * with the defaults; call this with your names to generate the file for your own migration tool.
 *
 * Columns: `key` (primary key, byte-wise `"C"` collation), `state`, `fingerprint`, `token`,
 * `lease_expires_at` and `expires_at` (`timestamptz`, set from the database clock), and the
 * response of a completed record: `status`, `headers` (a `jsonb` array of `[name, value]` pairs, in
 * order, repeated names kept), `body` (`bytea`) and `omitted` (why no body was kept).
 */
export function migrationSql(options: TableOptions = {}): string {
  const { steps } = migration(options);
  const createSchema = steps.schema === null ? '' : `${steps.schema}\n\n`;
  return `-- @idem/postgres: the table of idempotency records. Safe to run again (IF NOT EXISTS).
-- For another table or schema name: migrationSql({ table, schema }) from @idem/postgres.
${createSchema}${steps.table}

-- The sweeper deletes expired rows oldest first, in small batches.
${steps.index}
`;
}

/** The migration of one table, object by object, and how to find which of its objects exist. */
export interface Migration {
  /** The statement creating each object (`IF NOT EXISTS`); `schema` is `null` when the table is unqualified. */
  readonly steps: {
    /** `CREATE SCHEMA IF NOT EXISTS`, or `null` when the table is unqualified. */
    readonly schema: string | null;
    /** `CREATE TABLE IF NOT EXISTS` of the records table. */
    readonly table: string;
    /** `CREATE INDEX IF NOT EXISTS` of the expiry index the sweeper uses. */
    readonly index: string;
  };
  /**
   * One row of booleans, `schema_exists`, `table_exists`, `index_exists`, for {@link Migration.values}.
   * The table is looked up as the store's statements name it (unqualified: through `search_path`), and
   * the index on that table.
   */
  readonly existing: string;
  /** The parameters of {@link Migration.existing}. */
  readonly values: readonly (string | null)[];
}

/** Build the {@link Migration} of the configured table. */
export function migration(options: TableOptions = {}): Migration {
  const names = tableNames(options);
  return {
    steps: {
      schema: names.schema === null ? null : `CREATE SCHEMA IF NOT EXISTS ${names.schema};`,
      table: `CREATE TABLE IF NOT EXISTS ${names.qualified} (
  key              text COLLATE "C" PRIMARY KEY,
  state            text NOT NULL CHECK (state IN ('in_flight', 'completed', 'failed')),
  fingerprint      text NOT NULL,
  token            text NOT NULL,
  lease_expires_at timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL,
  status           integer,
  headers          jsonb,
  body             bytea,
  omitted          text CHECK (omitted IN ('too_large', 'streaming')),
  CHECK ((state = 'completed') = (status IS NOT NULL AND headers IS NOT NULL AND body IS NOT NULL))
);`,
      index: `CREATE INDEX IF NOT EXISTS ${names.expiryIndex} ON ${names.qualified} (expires_at);`,
    },
    existing: `SELECT $3::text IS NULL
         OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $3::text) AS schema_exists,
       to_regclass($1::text) IS NOT NULL AS table_exists,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid = to_regclass($1::text) AND c.relname = $2::text) AS index_exists`,
    values: [names.qualified, (options.table ?? DEFAULT_TABLE) + INDEX_SUFFIX, options.schema ?? null],
  };
}
