import type { TableNames } from './schema.js';

/**
 * The SQL of every store operation, one statement each, with no session state: the store sends them
 * as named prepared statements (parsed and planned once per connection) or, with
 * `preparedStatements: false`, unnamed (for a pooler in transaction mode that does not track them).
 *
 * Times: `clock_timestamp()` is the database's wall clock at the moment of the call. `now()` would be
 * the start of the surrounding transaction, which is wrong for `completeWithin` inside a long
 * business transaction.
 */
export interface Statements {
  /**
   * $1 key, $2 fingerprint, $3 token, $4 lease ms, $5 ttl ms -> one row, `acquired` + record, or none
   * when a concurrent claim changed the record meanwhile (send it again).
   */
  readonly acquire: string;
  /** $1 key, $2 token, $3 ttl ms, $4 status, $5 headers json, $6 body, $7 omitted -> rowCount. */
  readonly complete: string;
  /** $1 key, $2 token, $3 ttl ms -> rowCount. */
  readonly release: string;
  /** $1 key, $2 token, $3 lease ms -> rowCount. */
  readonly extend: string;
  /** $1 key -> zero or one record row. */
  readonly get: string;
  /** $1 key. */
  readonly delete: string;
  /** $1 batch size -> rowCount. */
  readonly sweep: string;
}

const ms = (param: string) => `${param}::float8 * interval '1 millisecond'`;
const epochMs = (column: string) => `floor(extract(epoch FROM ${column}) * 1000)::float8`;

/** The record's columns, as `decodeRecord` reads them. */
const RECORD_NAMES =
  'state, fingerprint, token, lease_expires_at, expires_at, status, headers, body, omitted';

/** The record as every reading statement returns it: {@link RECORD_NAMES}, times in epoch ms. */
const RECORD_COLUMNS = RECORD_NAMES.replace(/\w+_at\b/g, (time) => `${epochMs(time)} AS ${time}`);

/** Columns a claim writes. */
const CLAIM_COLUMNS = [
  'state',
  'fingerprint',
  'token',
  'lease_expires_at',
  'expires_at',
  'status',
  'headers',
  'body',
  'omitted',
] as const;

/** Build the statements for one table. */
export function statements(names: TableNames): Statements {
  const t = names.qualified;
  // The rules of core's `transition` for a claim: the record has expired, or it has the same
  // fingerprint and is failed or in flight with an expired lease.
  const takeoverAt = (row: string, fingerprint: string, now: string) =>
    `(${row}.expires_at <= ${now} OR (${row}.fingerprint = ${fingerprint} AND (${row}.state = 'failed' \
OR (${row}.state = 'in_flight' AND ${row}.lease_expires_at <= ${now}))))`;
  const assignments = CLAIM_COLUMNS.map((column) => `${column} = excluded.${column}`).join(', ');
  return {
    // First the row as the statement's snapshot has it: when that refuses the claim (a replay, a
    // conflict, a mismatch), it is the answer, and the statement writes nothing: no row lock, no WAL,
    // no commit to flush, so retries of one key run side by side instead of one after another.
    // Otherwise (no row, or one the claim may take over) the INSERT decides on the row as it is now,
    // where "now" is the instant of the claim, recovered from the row it proposes (lease end minus
    // lease length). No row comes back when that row refuses the claim although the snapshot's did not
    // (a concurrent claim committed it meanwhile): the store then sends the statement again, whose
    // snapshot has that row.
    acquire: `WITH seen AS (
  SELECT ${RECORD_COLUMNS}, NOT ${takeoverAt('r', '$2::text', 'clock_timestamp()')} AS blocks
  FROM ${t} AS r WHERE r.key = $1::text
), claimed AS (
  INSERT INTO ${t} AS r (key, state, fingerprint, token, lease_expires_at, expires_at)
  SELECT $1::text, 'in_flight', $2::text, $3::text, clock_timestamp() + ${ms('$4')}, clock_timestamp() + ${ms('$5')}
  WHERE NOT EXISTS (SELECT FROM seen WHERE blocks)
  ON CONFLICT (key) DO UPDATE SET ${assignments}
  WHERE ${takeoverAt('r', 'excluded.fingerprint', `(excluded.lease_expires_at - ${ms('$4')})`)}
  RETURNING ${RECORD_COLUMNS}
)
SELECT true AS acquired, * FROM claimed
UNION ALL
SELECT false, ${RECORD_NAMES} FROM seen WHERE blocks`,

    complete: `UPDATE ${t} SET state = 'completed', expires_at = clock_timestamp() + ${ms('$3')},
  status = $4::integer, headers = $5::jsonb, body = $6::bytea, omitted = $7::text
WHERE key = $1::text AND token = $2::text AND state = 'in_flight' AND expires_at > clock_timestamp()`,

    release: `UPDATE ${t} SET state = 'failed', expires_at = clock_timestamp() + ${ms('$3')}
WHERE key = $1::text AND token = $2::text AND state = 'in_flight' AND expires_at > clock_timestamp()`,

    extend: `UPDATE ${t} SET lease_expires_at = clock_timestamp() + ${ms('$3')}
WHERE key = $1::text AND token = $2::text AND state = 'in_flight' AND expires_at > clock_timestamp()`,

    get: `SELECT ${RECORD_COLUMNS} FROM ${t} WHERE key = $1::text AND expires_at > clock_timestamp()`,

    delete: `DELETE FROM ${t} WHERE key = $1::text`,

    // SKIP LOCKED: several sweepers (one per app instance) share the work instead of queueing behind
    // each other, and a row an operation is writing right now is left for the next round. The batch
    // is one short transaction, so no lock is held for long.
    sweep: `WITH doomed AS (
  SELECT key FROM ${t} WHERE expires_at <= clock_timestamp()
  ORDER BY expires_at LIMIT $1::integer FOR UPDATE SKIP LOCKED
)
DELETE FROM ${t} AS r USING doomed WHERE r.key = doomed.key`,
  };
}
