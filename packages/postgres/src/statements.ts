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
  /** $1 key, $2 fingerprint, $3 token, $4 lease ms, $5 ttl ms -> one row: `acquired` + record. */
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

/** The record as every reading statement returns it; `decodeRecord` reads these columns. */
const RECORD_COLUMNS = `state, fingerprint, token, ${epochMs('lease_expires_at')} AS lease_expires_at, \
${epochMs('expires_at')} AS expires_at, status, headers, body, omitted`;

/** Columns the claim writes; on a refused claim each keeps its current value. */
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
  // fingerprint and is failed or in flight with an expired lease. "Now" is the instant of the claim,
  // recovered from the row it proposes (lease end minus lease length): a fixed value, so every column
  // below takes the same branch. (A CTE holding clock_timestamp() would do too, at twice the planning
  // time, which unnamed statements pay on every call.)
  const now = `(excluded.lease_expires_at - ${ms('$4')})`;
  const takeover = `(r.expires_at <= ${now} OR (r.fingerprint = excluded.fingerprint AND (r.state = 'failed' \
OR (r.state = 'in_flight' AND r.lease_expires_at <= ${now}))))`;
  // A refused claim still goes through DO UPDATE, writing the row back unchanged: that is what makes
  // RETURNING hand back the blocking record, as it is now. A DO UPDATE ... WHERE <takeover> returns
  // nothing when refused, and a second SELECT in the same statement reads the statement's snapshot,
  // which misses a row inserted by a concurrent claim that committed meanwhile.
  const assignments = CLAIM_COLUMNS.map(
    (column) => `${column} = CASE WHEN ${takeover} THEN excluded.${column} ELSE r.${column} END`,
  ).join(',\n  ');
  return {
    acquire: `INSERT INTO ${t} AS r (key, state, fingerprint, token, lease_expires_at, expires_at)
VALUES ($1::text, 'in_flight', $2::text, $3::text, clock_timestamp() + ${ms('$4')}, clock_timestamp() + ${ms('$5')})
ON CONFLICT (key) DO UPDATE SET
  ${assignments}
RETURNING r.token = $3::text AS acquired, ${RECORD_COLUMNS}`,

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
