/** One order, as the API returns it and the repositories keep it. */
export interface Order {
  /** `ord_` + 16 hex characters. */
  id: string;
  /** The Idempotency-Key the order was created under (from the binding's context), `null` without one. */
  key: string | null;
  item: string;
  quantity: number;
  /** Which run of the create handler for this key made the order (2 after a simulated error). */
  attempt: number;
  /** ISO 8601. */
  createdAt: string;
}

/** How an order request may ask the handler to misbehave, so that every idem outcome can be seen. */
export type Simulation = 'slow' | 'error';

/** A valid `POST /orders` payload. */
export interface OrderInput {
  item: string;
  quantity: number;
  simulate?: Simulation;
}

/**
 * Where orders live. One implementation per backend (`repositories/*.ts`); the Redis and Postgres ones
 * keep orders next to idem's records, so that several demo processes share them.
 */
export interface OrderRepository {
  /** Count one more run of the create handler under `key`; returns the count including this run. */
  recordAttempt(key: string): Promise<number>;
  /** How many times the create handler ran under `key`. */
  attempts(key: string): Promise<number>;
  insert(order: Order): Promise<void>;
  /** The newest orders first: all of them for `key`, or the latest `limit` overall. */
  list(filter: { key?: string; limit: number }): Promise<Order[]>;
  get(id: string): Promise<Order | null>;
}

/** A framework-neutral HTTP answer; each framework file only copies it onto its response. */
export interface Reply {
  status: number;
  /** Header pairs; `set-cookie` may repeat. */
  headers: Array<[string, string]>;
  /** The body text (JSON, or the page's HTML). */
  body: string;
}

/** Options of {@link OrderService}. */
export interface OrderServiceOptions {
  /** How long a `"simulate": "slow"` order takes, in ms. Default 2000. */
  slowMs?: number;
}

const LIST_LIMIT = 100;
const SIMULATIONS: ReadonlySet<string> = new Set(['slow', 'error']);
const PROBLEM_BASE = 'https://idem.dev/demo/problems/';

/**
 * The orders API without any framework: validation, the simulated misbehaviour and the answers.
 * Framework files parse the request, call one method and send the {@link Reply}.
 */
export class OrderService {
  readonly slowMs: number;

  constructor(
    readonly orders: OrderRepository,
    options: OrderServiceOptions = {},
  ) {
    this.slowMs = options.slowMs ?? 2_000;
  }

  /**
   * `POST /orders`. `body` is the parsed JSON (`undefined` when there was none), `key` the idempotency
   * key the binding's context names. `slow` takes {@link slowMs} before answering; `error` answers 500
   * on the first run for a key (a transient failure: idem stores no 5xx, so the retry runs again and
   * succeeds). The answer sets the `last_order` cookie, which a replay must not repeat.
   */
  async create(body: unknown, key: string | undefined): Promise<Reply> {
    const input = parseOrderInput(body);
    if (typeof input === 'string') return this.badRequest(input);
    const attempt = key === undefined ? 1 : await this.orders.recordAttempt(key);
    if (input.simulate === 'slow') await new Promise((resolve) => setTimeout(resolve, this.slowMs));
    if (input.simulate === 'error' && attempt === 1) {
      return problem(
        500,
        'simulated-failure',
        'Simulated failure',
        'the order service failed on purpose ("simulate": "error", first run for this key). Nothing was ' +
          'created and idem did not store this answer, so a retry with the same key runs the handler again.',
      );
    }
    const order: Order = {
      id: `ord_${crypto.randomUUID().replaceAll('-', '').slice(0, 16)}`,
      key: key ?? null,
      item: input.item,
      quantity: input.quantity,
      attempt,
      createdAt: new Date().toISOString(),
    };
    await this.orders.insert(order);
    return {
      status: 201,
      headers: [
        ['content-type', 'application/json'],
        ['location', `/orders/${order.id}`],
        ['set-cookie', `last_order=${order.id}; Path=/; SameSite=Lax`],
      ],
      body: JSON.stringify(order),
    };
  }

  /**
   * `GET /orders[?key=...]`: with a key, every order created under it and how many times the handler
   * ran for it (`executions` is the number of orders: idem's promise is that it is 1 per key).
   */
  async list(key: string | undefined): Promise<Reply> {
    if (key === undefined || key === '') {
      const orders = await this.orders.list({ limit: LIST_LIMIT });
      return json(200, { orders, count: orders.length });
    }
    const [orders, attempts] = await Promise.all([
      this.orders.list({ key, limit: LIST_LIMIT }),
      this.orders.attempts(key),
    ]);
    return json(200, { key, orders, count: orders.length, executions: orders.length, attempts });
  }

  /** `GET /orders/:id`. */
  async get(id: string): Promise<Reply> {
    const order = await this.orders.get(id);
    return order ? json(200, order) : problem(404, 'order-not-found', 'Order not found', `no order ${id}`);
  }

  /** A `400` for a request the framework could not even parse (malformed JSON). */
  badRequest(detail: string): Reply {
    return problem(400, 'invalid-order', 'Invalid order', detail);
  }

  /** A `500` for an unexpected failure (the details go to the log, not to the client). */
  failure(): Reply {
    return problem(500, 'internal-error', 'Internal error', 'the order service failed; see the server log');
  }

  /**
   * The answer to a request no route took: `405` with `Allow` for one of the demo's paths asked with
   * another method (`PUT /orders`), `404` for any other path.
   */
  unrouted(method: string, path: string): Reply {
    const allow = ROUTES.find(([pattern]) => pattern.test(path))?.[1];
    if (allow === undefined) return problem(404, 'not-found', 'Not found', `nothing at ${path}`);
    const reply = problem(
      405,
      'method-not-allowed',
      'Method not allowed',
      `${path} takes ${allow}, not ${method}`,
    );
    reply.headers.push(['allow', allow]);
    return reply;
  }
}

/** The demo's paths and the methods each takes (HEAD with GET, as every framework here answers it). */
const ROUTES: ReadonlyArray<readonly [RegExp, string]> = [
  [/^\/$/, 'GET, HEAD'],
  [/^\/orders$/, 'GET, HEAD, POST'],
  [/^\/orders\/[^/]+$/, 'GET, HEAD'],
];

/** Validate a `POST /orders` body; returns the input, or what is wrong with it. */
export function parseOrderInput(body: unknown): OrderInput | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return 'the body must be a JSON object such as {"item":"coffee","quantity":2}';
  }
  const { item, quantity = 1, simulate } = body as Record<string, unknown>;
  if (typeof item !== 'string' || item.length === 0 || item.length > 200) {
    return '"item" must be a non-empty string of at most 200 characters';
  }
  if (typeof quantity !== 'number' || !Number.isInteger(quantity) || quantity < 1 || quantity > 1000) {
    return '"quantity" must be an integer from 1 to 1000';
  }
  if (simulate === undefined || simulate === null) return { item, quantity };
  if (typeof simulate !== 'string' || !SIMULATIONS.has(simulate)) {
    return '"simulate" must be "slow" or "error" when present';
  }
  return { item, quantity, simulate: simulate as Simulation };
}

function json(status: number, value: unknown): Reply {
  return { status, headers: [['content-type', 'application/json']], body: JSON.stringify(value) };
}

function problem(status: number, type: string, title: string, detail: string): Reply {
  return {
    status,
    headers: [['content-type', 'application/problem+json']],
    body: JSON.stringify({ type: PROBLEM_BASE + type, title, status, detail }),
  };
}
