/**
 * The Lua scripts behind the store: one per operation, each a single round trip.
 *
 * Every script touches exactly one key, declared as KEYS[1] (aliased `key`), so it runs unchanged on
 * Redis Cluster. Time comes from the server (`TIME`; Redis >= 5 replicates script effects, so a
 * non-deterministic command before a write is allowed), and a record's end is the key's own expiry
 * (`PEXPIREAT` at the `e` field), so nothing needs a sweeper.
 *
 * Replies: an integer (1 = done / acquired, 0 = refused / absent), an array (the record's fields, as
 * `HGETALL` returns them), or a bulk string saying why the key is not a record this store can read.
 */

/** Format version written to field `v`; the scripts and the codec refuse any other. */
export const RECORD_FORMAT = '1';

const PRELUDE = `
local key = KEYS[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- The fields every decision needs. nil: absent, or past its end on the server clock (the key has not
-- been evicted yet). false + why: the key holds something this store did not write.
local function read_head()
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then return nil end
  if kind ~= 'hash' then return false, 'holds a Redis ' .. kind .. ', not a hash' end
  local f = redis.call('HMGET', key, 'v', 's', 'f', 't', 'l', 'e')
  if f[1] ~= '${RECORD_FORMAT}' then return false, 'has no known format version (field v)' end
  local state = f[2]
  if state ~= 'in_flight' and state ~= 'completed' and state ~= 'failed' then
    return false, 'has an unknown state (field s)'
  end
  local lease, expires = tonumber(f[5]), tonumber(f[6])
  if not f[3] or not f[4] or not lease or not expires then
    return false, 'lacks a fingerprint, token, lease or expiry (fields f, t, l, e)'
  end
  if expires <= now then return nil end
  return { state = state, fingerprint = f[3], token = f[4], lease = lease, expires = expires }
end

local function ms(value)
  return string.format('%d', value)
end
`;

/**
 * ARGV: fingerprint, token, leaseMs, ttlMs.
 * A token that already holds the record in flight is this very claim sent again (its first reply was
 * lost with the connection), so it is acquired, not blocked by itself.
 */
const ACQUIRE = `${PRELUDE}
local fingerprint, token = ARGV[1], ARGV[2]
local record, why = read_head()
if record == false then return why end
if record then
  if record.state == 'in_flight' and record.token == token then return 1 end
  local free = record.fingerprint == fingerprint
    and (record.state == 'failed' or (record.state == 'in_flight' and record.lease <= now))
  if not free then return redis.call('HGETALL', key) end
end
local expires = now + tonumber(ARGV[4])
redis.call('DEL', key)
redis.call('HSET', key, 'v', '${RECORD_FORMAT}', 's', 'in_flight', 'f', fingerprint, 't', token,
  'l', ms(now + tonumber(ARGV[3])), 'e', ms(expires))
redis.call('PEXPIREAT', key, ms(expires))
return 1
`;

/** ARGV: token, ttlMs, status, headers (encoded), body (bytes), omitted ('' when the body is kept). */
const COMPLETE = `${PRELUDE}
local record, why = read_head()
if record == false then return why end
if not record or record.state ~= 'in_flight' or record.token ~= ARGV[1] then return 0 end
local expires = ms(now + tonumber(ARGV[2]))
redis.call('HSET', key, 's', 'completed', 'e', expires, 'c', ARGV[3], 'h', ARGV[4], 'b', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', key, 'o', ARGV[6]) end
redis.call('PEXPIREAT', key, expires)
return 1
`;

/** ARGV: token, ttlMs. */
const RELEASE = `${PRELUDE}
local record, why = read_head()
if record == false then return why end
if not record or record.state ~= 'in_flight' or record.token ~= ARGV[1] then return 0 end
local expires = ms(now + tonumber(ARGV[2]))
redis.call('HSET', key, 's', 'failed', 'e', expires)
redis.call('PEXPIREAT', key, expires)
return 1
`;

/** ARGV: token, leaseMs. */
const EXTEND = `${PRELUDE}
local record, why = read_head()
if record == false then return why end
if not record or record.state ~= 'in_flight' or record.token ~= ARGV[1] then return 0 end
redis.call('HSET', key, 'l', ms(now + tonumber(ARGV[2])))
return 1
`;

/** No ARGV. Read through a script so that expiry is judged on the server clock, like every write. */
const GET = `${PRELUDE}
local record, why = read_head()
if record == false then return why end
if not record then return 0 end
return redis.call('HGETALL', key)
`;

/** One script: its source and how many of its arguments are keys (always the one record key). */
export interface ScriptDefinition {
  /** The Lua source, defined on the client with ioredis's `defineCommand`. */
  readonly lua: string;
  /** How many arguments are keys: always 1, the record key. */
  readonly numberOfKeys: 1;
}

/** The store's operations by name. */
export type ScriptName = 'acquire' | 'complete' | 'release' | 'extend' | 'get';

/** Every script the store runs. */
export const SCRIPTS: Readonly<Record<ScriptName, ScriptDefinition>> = {
  acquire: { lua: ACQUIRE, numberOfKeys: 1 },
  complete: { lua: COMPLETE, numberOfKeys: 1 },
  release: { lua: RELEASE, numberOfKeys: 1 },
  extend: { lua: EXTEND, numberOfKeys: 1 },
  get: { lua: GET, numberOfKeys: 1 },
};
