import { createHash } from 'node:crypto';
import {
  type AcquireResult,
  type Claim,
  IdempotencyError,
  type IdempotencyRecord,
  type Store,
  type StoredResponse,
} from '@idem/core';
import type { Cluster, Redis } from 'ioredis';
import { decodeRecord, encodeResponse, RecordFormatError } from './codec.js';
import { SCRIPTS, type ScriptDefinition, type ScriptName } from './scripts.js';

/** Options of {@link redisStore}. */
export interface RedisStoreOptions {
  /**
   * The ioredis client to use: a `Redis` (standalone, Sentinel) or a `Cluster`. The store never creates,
   * connects or closes it. Recommended: `maxRetriesPerRequest: 0` (`redisOptions` of a Cluster), so that
   * a command in flight when the connection drops fails at once instead of being re-sent after
   * reconnecting; optionally `enableOfflineQueue: false` (see the README).
   * The store defines its scripts on it with `defineCommand` (names `idem_<operation>_<sha>`).
   */
  client: Redis | Cluster;
  /**
   * Prepended to every key the store writes, e.g. `"myapp:"`. Storage keys already start with the
   * engine's prefix (`"idem:"` by default), and an ioredis `keyPrefix` on the client applies as well.
   * Default `""`.
   */
  prefix?: string | undefined;
}

type ScriptCall = (key: string, ...args: Array<string | Buffer>) => Promise<unknown>;

const STORE = 'redis';

/**
 * Client states in which the connection is known to be down. Commands sent then would wait in
 * ioredis' offline queue until Redis is back (and could run long after the engine gave up on them),
 * so the store refuses them at once. `wait`, `connecting` and `connect` are left to the client's own
 * `enableOfflineQueue` setting, so that a freshly created client works without awaiting `ready`.
 */
const DOWN: ReadonlySet<string> = new Set(['reconnecting', 'close', 'end', 'disconnecting']);

/**
 * An idem Store on Redis through ioredis. Each of acquire, complete, release, extend and get is one Lua
 * script touching only its record's key (one round trip, Cluster-safe), called by SHA (`EVALSHA`) and
 * re-sent as `EVAL` after a `NOSCRIPT` (server restart, failover, `SCRIPT FLUSH`). A refused acquire
 * returns the blocking record in the same round trip, so a new request costs 2 round trips and a
 * replay 1. Times come from the Redis clock; records end through key expiry (`PEXPIREAT`), so there
 * is no sweeper.
 *
 * Errors: a record the store did not write (another type, a foreign hash, an unknown format version)
 * is reported as `IdempotencyError` `record_corrupt`, naming the key; a client whose connection is down
 * fails at once with `store_unavailable`; other Redis errors are thrown as they are (the engine turns
 * them into `store_unavailable`).
 *
 * @example
 * ```ts
 * const store = redisStore({ client: new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 0 }) });
 * ```
 */
export function redisStore(options: RedisStoreOptions): Store {
  const client = options?.client;
  if (!client || typeof client.defineCommand !== 'function' || typeof client.status !== 'string') {
    throw new TypeError('[idem] [redis] options.client must be an ioredis Redis or Cluster instance');
  }
  const prefix = options.prefix ?? '';
  const scripts = defineScripts(client);

  const failFast = (operation: string, key: string): void => {
    if (!DOWN.has(client.status)) return;
    throw new IdempotencyError(
      'store_unavailable',
      `[${STORE}] the Redis connection is down (client status "${client.status}"); ${operation} fails at once instead of queueing`,
      { details: { store: STORE, key, retryAfterSeconds: 1 } },
    );
  };

  const run = async (operation: ScriptName, key: string, args: Array<string | Buffer>): Promise<unknown> => {
    failFast(operation, key);
    return scripts[operation](prefix + key, ...args);
  };

  const toRecord = (key: string, reply: unknown): IdempotencyRecord => {
    if (!Array.isArray(reply)) throw corrupt(prefix + key, key, reply);
    try {
      return decodeRecord(reply);
    } catch (error) {
      if (error instanceof RecordFormatError) throw corrupt(prefix + key, key, error.message, error);
      throw error;
    }
  };

  const toBoolean = (key: string, reply: unknown): boolean => {
    if (typeof reply !== 'number') throw corrupt(prefix + key, key, reply);
    return reply === 1;
  };

  return {
    name: STORE,

    async acquire(key: string, claim: Claim): Promise<AcquireResult> {
      const reply = await run('acquire', key, [
        claim.fingerprint,
        claim.token,
        milliseconds('leaseMs', claim.leaseMs),
        milliseconds('ttlMs', claim.ttlMs),
      ]);
      if (reply === 1) return { acquired: true };
      return { acquired: false, record: toRecord(key, reply) };
    },

    async complete(key: string, token: string, response: StoredResponse, ttlMs: number): Promise<boolean> {
      const reply = await run('complete', key, [
        token,
        milliseconds('ttlMs', ttlMs),
        ...encodeResponse(response),
      ]);
      return toBoolean(key, reply);
    },

    async release(key: string, token: string, ttlMs: number): Promise<boolean> {
      return toBoolean(key, await run('release', key, [token, milliseconds('ttlMs', ttlMs)]));
    },

    async extend(key: string, token: string, leaseMs: number): Promise<boolean> {
      return toBoolean(key, await run('extend', key, [token, milliseconds('leaseMs', leaseMs)]));
    },

    async get(key: string): Promise<IdempotencyRecord | null> {
      const reply = await run('get', key, []);
      return reply === 0 ? null : toRecord(key, reply);
    },

    async delete(key: string): Promise<void> {
      failFast('delete', key);
      // UNLINK frees a large body off the main thread; the key is gone at once either way.
      await client.unlink(prefix + key);
    },
  };
}

/**
 * Defines the scripts on the client (once per client and script version) and returns callers of their
 * Buffer variants, so that bodies come back as raw bytes. ioredis sends a script as `EVAL` the first
 * time on a connection and as `EVALSHA` after that, and re-sends it as `EVAL` after a `NOSCRIPT`.
 */
function defineScripts(client: Redis | Cluster): Record<ScriptName, ScriptCall> {
  const commands = client as unknown as Record<string, ScriptCall | undefined>;
  const calls = {} as Record<ScriptName, ScriptCall>;
  for (const [operation, definition] of Object.entries(SCRIPTS) as Array<[ScriptName, ScriptDefinition]>) {
    // The SHA in the name keeps two versions of this package sharing one client from overwriting
    // each other's scripts.
    const name = `idem_${operation}_${createHash('sha1').update(definition.lua).digest('hex').slice(0, 12)}`;
    if (typeof commands[`${name}Buffer`] !== 'function') {
      client.defineCommand(name, { lua: definition.lua, numberOfKeys: definition.numberOfKeys });
    }
    const call = commands[`${name}Buffer`] as ScriptCall;
    calls[operation] = (key, ...args) => call.call(client, key, ...args);
  }
  return calls;
}

/** A duration argument, in whole milliseconds (rounded up, so that a lease is never shortened). */
function milliseconds(name: string, value: number): string {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new TypeError(`[idem] [${STORE}] ${name} must be a positive number of milliseconds, got ${value}`);
  }
  return String(Math.ceil(value));
}

function corrupt(redisKey: string, key: string, reason: unknown, cause?: unknown): IdempotencyError {
  const why =
    typeof reason === 'string'
      ? reason
      : Buffer.isBuffer(reason)
        ? reason.toString('utf8')
        : `gave an unexpected reply (${typeof reason})`;
  return new IdempotencyError(
    'record_corrupt',
    `[${STORE}] key "${redisKey}" does not hold a record this store can read: it ${why}. Delete the key to reuse it.`,
    cause === undefined ? { details: { store: STORE, key } } : { cause, details: { store: STORE, key } },
  );
}
