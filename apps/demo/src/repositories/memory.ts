import type { Order, OrderRepository } from '../orders.js';

/** Orders kept by the demo process at most; the oldest go first. */
const MAX_ORDERS = 100_000;

/**
 * Orders in this process's memory: used with the memory and DynamoDB stores. Not shared, so two demo
 * processes on it each create their own order for a key (the storm shows it).
 */
export function memoryOrders(): OrderRepository {
  const orders = new Map<string, Order>();
  const byKey = new Map<string, Order[]>();
  const attempts = new Map<string, number>();
  return {
    async recordAttempt(key) {
      const count = (attempts.get(key) ?? 0) + 1;
      attempts.delete(key);
      attempts.set(key, count);
      if (attempts.size > MAX_ORDERS) attempts.delete(attempts.keys().next().value!);
      return count;
    },
    async attempts(key) {
      return attempts.get(key) ?? 0;
    },
    async insert(order) {
      orders.set(order.id, order);
      if (order.key !== null) byKey.set(order.key, [...(byKey.get(order.key) ?? []), order]);
      if (orders.size > MAX_ORDERS) {
        const oldest = orders.values().next().value;
        if (oldest) forget(oldest);
      }
    },
    async list({ key, limit }) {
      const found = key === undefined ? [...orders.values()] : (byKey.get(key) ?? []);
      return found.slice(-limit).reverse();
    },
    async get(id) {
      return orders.get(id) ?? null;
    },
  };

  function forget(order: Order): void {
    orders.delete(order.id);
    if (order.key === null) return;
    const rest = (byKey.get(order.key) ?? []).filter((kept) => kept.id !== order.id);
    if (rest.length > 0) byKey.set(order.key, rest);
    else {
      byKey.delete(order.key);
      attempts.delete(order.key);
    }
  }
}
