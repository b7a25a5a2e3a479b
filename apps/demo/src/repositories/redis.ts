import type { Cluster, Redis } from 'ioredis';
import type { Order, OrderRepository } from '../orders.js';

/** Options of {@link redisOrders}. */
export interface RedisOrdersOptions {
  /** The client idem's store uses too. */
  client: Redis | Cluster;
  /** Prefix of the demo's keys. Default `"idem-demo:"`. */
  prefix?: string;
  /** How long orders are kept, in ms (like idem's records). Default 24 h. */
  ttlMs?: number;
}

/**
 * Orders in Redis, next to idem's records, so that every demo process on the same Redis sees the same
 * orders. `<prefix>order:<id>` holds an order (JSON), `<prefix>orders` orders them by time,
 * `<prefix>key:<key>` lists the orders of one idempotency key and `<prefix>attempts:<key>` counts the
 * handler's runs for it. Everything expires after `ttlMs`.
 */
export function redisOrders(options: RedisOrdersOptions): OrderRepository {
  const { client } = options;
  const prefix = options.prefix ?? 'idem-demo:';
  const ttlMs = options.ttlMs ?? 24 * 60 * 60 * 1000;
  const orderKey = (id: string) => `${prefix}order:${id}`;
  const keyList = (key: string) => `${prefix}key:${key}`;
  const attemptCounter = (key: string) => `${prefix}attempts:${key}`;
  const timeline = `${prefix}orders`;

  const read = async (ids: string[]): Promise<Order[]> => {
    if (ids.length === 0) return [];
    // One GET per id rather than MGET: the keys may live in different Cluster slots.
    const values = await Promise.all(ids.map((id) => client.get(orderKey(id))));
    return values.flatMap((value) => (value === null ? [] : [JSON.parse(value) as Order]));
  };

  return {
    async recordAttempt(key) {
      const counter = attemptCounter(key);
      const count = await client.incr(counter);
      await client.pexpire(counter, ttlMs);
      return count;
    },
    async attempts(key) {
      return Number((await client.get(attemptCounter(key))) ?? 0);
    },
    async insert(order) {
      const at = Date.parse(order.createdAt);
      await Promise.all([
        client.set(orderKey(order.id), JSON.stringify(order), 'PX', ttlMs),
        client.zadd(timeline, at, order.id),
        client.zremrangebyscore(timeline, '-inf', at - ttlMs),
        ...(order.key === null
          ? []
          : [
              client
                .rpush(keyList(order.key), order.id)
                .then(() => client.pexpire(keyList(order.key!), ttlMs)),
            ]),
      ]);
    },
    async list({ key, limit }) {
      if (key === undefined) return read(await client.zrevrange(timeline, 0, limit - 1));
      return read((await client.lrange(keyList(key), -limit, -1)).reverse());
    },
    async get(id) {
      return (await read([id]))[0] ?? null;
    },
  };
}
