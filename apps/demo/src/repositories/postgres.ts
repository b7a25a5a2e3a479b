import type { Pool } from 'pg';
import type { Order, OrderRepository } from '../orders.js';

/** Options of {@link postgresOrders}. */
export interface PostgresOrdersOptions {
  /** The pool idem's store uses too. */
  pool: Pool;
  /** Table of orders. Default `idem_demo_orders` (attempts go to `<table>_attempts`). */
  table?: string;
}

/** A Postgres-backed order repository, with its migration. */
export interface PostgresOrders extends OrderRepository {
  /** Create the tables if missing; safe to run from several processes at once. */
  migrate(): Promise<void>;
}

interface OrderRow {
  id: string;
  idempotency_key: string | null;
  item: string;
  quantity: number;
  attempt: number;
  created_at: Date;
}

/**
 * Orders in PostgreSQL, in the same database as idem's records, so that every demo process on it sees
 * the same orders.
 */
export function postgresOrders(options: PostgresOrdersOptions): PostgresOrders {
  const { pool } = options;
  const name = options.table ?? 'idem_demo_orders';
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(name)) throw new TypeError(`[demo] invalid table name ${name}`);
  const orders = `"${name}"`;
  const attempts = `"${name}_attempts"`;
  const columns = 'id, idempotency_key, item, quantity, attempt, created_at';

  return {
    async migrate() {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        // Two demo processes starting together would otherwise race on CREATE TABLE IF NOT EXISTS.
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [name]);
        await client.query(`CREATE TABLE IF NOT EXISTS ${orders} (
          id text PRIMARY KEY,
          idempotency_key text,
          item text NOT NULL,
          quantity integer NOT NULL,
          attempt integer NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        )`);
        await client.query(
          `CREATE INDEX IF NOT EXISTS "${name}_key_idx" ON ${orders} (idempotency_key, created_at)`,
        );
        await client.query(`CREATE INDEX IF NOT EXISTS "${name}_created_idx" ON ${orders} (created_at)`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${attempts} (
          idempotency_key text PRIMARY KEY,
          attempts integer NOT NULL
        )`);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    async recordAttempt(key) {
      const { rows } = await pool.query<{ attempts: number }>(
        `INSERT INTO ${attempts} (idempotency_key, attempts) VALUES ($1, 1)
         ON CONFLICT (idempotency_key) DO UPDATE SET attempts = ${attempts}.attempts + 1
         RETURNING attempts`,
        [key],
      );
      return rows[0]!.attempts;
    },
    async attempts(key) {
      const { rows } = await pool.query<{ attempts: number }>(
        `SELECT attempts FROM ${attempts} WHERE idempotency_key = $1`,
        [key],
      );
      return rows[0]?.attempts ?? 0;
    },
    async insert(order) {
      await pool.query(`INSERT INTO ${orders} (${columns}) VALUES ($1, $2, $3, $4, $5, $6)`, [
        order.id,
        order.key,
        order.item,
        order.quantity,
        order.attempt,
        order.createdAt,
      ]);
    },
    async list({ key, limit }) {
      const { rows } =
        key === undefined
          ? await pool.query<OrderRow>(`SELECT ${columns} FROM ${orders} ORDER BY created_at DESC LIMIT $1`, [
              limit,
            ])
          : await pool.query<OrderRow>(
              `SELECT ${columns} FROM ${orders} WHERE idempotency_key = $1 ORDER BY created_at DESC LIMIT $2`,
              [key, limit],
            );
      return rows.map(toOrder);
    },
    async get(id) {
      const { rows } = await pool.query<OrderRow>(`SELECT ${columns} FROM ${orders} WHERE id = $1`, [id]);
      return rows[0] ? toOrder(rows[0]) : null;
    },
  };
}

function toOrder(row: OrderRow): Order {
  return {
    id: row.id,
    key: row.idempotency_key,
    item: row.item,
    quantity: row.quantity,
    attempt: row.attempt,
    createdAt: row.created_at.toISOString(),
  };
}
