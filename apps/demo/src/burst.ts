/** What the order payload asks the handler to do. */
export type Payload = 'normal' | 'slow' | 'error';
export const PAYLOADS: readonly Payload[] = ['normal', 'slow', 'error'];

/**
 * How one response turned out: the handler ran (`executed`, a fresh 2xx), the stored answer came back
 * (`replayed`), the key was in flight (`in_flight`, 409), the handler failed (`failed`, 5xx), or anything
 * else (`error`: another status, or no answer at all).
 */
export type Outcome = 'executed' | 'replayed' | 'in_flight' | 'failed' | 'error';

/** One request of a burst. */
export interface BurstResponse {
  phase: 'burst' | 'retry';
  url: string;
  /** `null` when no answer came (network error, timeout). */
  status: number | null;
  outcome: Outcome;
  /** The order id of a 2xx answer. */
  orderId: string | null;
  setCookie: boolean;
  ms: number;
  error?: string;
}

/** What happened to one key. */
export interface KeyResult {
  key: string;
  responses: BurstResponse[];
  /** Orders that exist for the key afterwards (read back from `GET /orders?key=` on every URL). */
  executions: number;
  orderIds: string[];
  counts: Record<Outcome, number>;
  /** Every 2xx answer (fresh or replayed) named the same order, one that exists, and no replay set a cookie. */
  consistent: boolean;
}

/** Options of {@link runStorm}. */
export interface StormOptions {
  /** Demo base URLs; the requests of every key are spread over them (round robin). */
  urls: readonly string[];
  /** How many keys. Default 10. */
  keys?: number;
  /** Concurrent requests per key. Default 10. */
  concurrency?: number;
  /** Sequential retries per key after its burst. Default 2. */
  retries?: number;
  payload?: Payload;
  /** Keys in flight at once. Default 50. */
  parallelKeys?: number;
  /** Per-request timeout in ms. Default 30 000. */
  timeoutMs?: number;
  /** Key prefix. Default `storm-<random>-`. */
  keyPrefix?: string;
}

/** The storm's outcome. */
export interface StormResult {
  urls: readonly string[];
  payload: Payload;
  concurrency: number;
  retries: number;
  keys: KeyResult[];
  totals: { requests: number; executions: number } & Record<Outcome, number>;
  /** Exactly one execution for every key, and every key consistent. */
  ok: boolean;
  durationMs: number;
}

/** The order body sent for a payload (the same for every request of a key, so retries match). */
export function orderBody(payload: Payload): string {
  const body: Record<string, unknown> = { item: 'storm coffee', quantity: 1 };
  if (payload !== 'normal') body['simulate'] = payload;
  return JSON.stringify(body);
}

/**
 * Fire, for each of `keys` keys, `concurrency` concurrent `POST /orders` with that key, then `retries`
 * sequential ones; then count the orders each key really created. idem's promise: one per key.
 */
export async function runStorm(options: StormOptions): Promise<StormResult> {
  const urls = options.urls.map((url) => url.replace(/\/+$/, ''));
  if (urls.length === 0) throw new TypeError('[demo] runStorm needs at least one URL');
  const keys = options.keys ?? 10;
  const concurrency = options.concurrency ?? 10;
  const retries = options.retries ?? 2;
  const payload = options.payload ?? 'normal';
  const timeoutMs = options.timeoutMs ?? 30_000;
  const prefix = options.keyPrefix ?? `storm-${Math.random().toString(36).slice(2, 8)}-`;
  const width = String(keys).length;
  const body = orderBody(payload);
  const started = Date.now();

  const runKey = async (index: number): Promise<KeyResult> => {
    const key = prefix + String(index + 1).padStart(width, '0');
    const target = (request: number) => urls[(index + request) % urls.length]!;
    const send = (request: number, phase: BurstResponse['phase']) =>
      post(target(request), key, body, phase, timeoutMs);
    const responses = await Promise.all(Array.from({ length: concurrency }, (_, i) => send(i, 'burst')));
    for (let i = 0; i < retries; i++) responses.push(await send(concurrency + i, 'retry'));
    const orderIds = await ordersOf(urls, key, timeoutMs);
    return summarise(key, responses, orderIds);
  };

  const results: KeyResult[] = new Array(keys);
  let next = 0;
  const worker = async () => {
    while (next < keys) {
      const index = next++;
      results[index] = await runKey(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(keys, options.parallelKeys ?? 50) }, worker));

  const totals = { requests: 0, executions: 0, executed: 0, replayed: 0, in_flight: 0, failed: 0, error: 0 };
  for (const result of results) {
    totals.requests += result.responses.length;
    totals.executions += result.executions;
    for (const outcome of Object.keys(result.counts) as Outcome[]) totals[outcome] += result.counts[outcome];
  }
  return {
    urls,
    payload,
    concurrency,
    retries,
    keys: results,
    totals,
    ok: results.every((result) => result.executions === 1 && result.consistent),
    durationMs: Date.now() - started,
  };
}

async function post(
  url: string,
  key: string,
  body: string,
  phase: BurstResponse['phase'],
  timeoutMs: number,
): Promise<BurstResponse> {
  const started = performance.now();
  try {
    const response = await fetch(`${url}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    const replayed = response.headers.get('idempotent-replayed') === 'true';
    const { status } = response;
    let orderId: string | null = null;
    if (status >= 200 && status < 300) {
      try {
        orderId = (JSON.parse(text) as { id?: string }).id ?? null;
      } catch {}
    }
    return {
      phase,
      url,
      status,
      outcome: replayed
        ? 'replayed'
        : status >= 200 && status < 300
          ? 'executed'
          : status === 409
            ? 'in_flight'
            : status >= 500
              ? 'failed'
              : 'error',
      orderId,
      setCookie: response.headers.has('set-cookie'),
      ms: performance.now() - started,
      ...(status >= 300 && status !== 409 && status < 500 && { error: `${status} ${text.slice(0, 200)}` }),
    };
  } catch (error) {
    return {
      phase,
      url,
      status: null,
      outcome: 'error',
      orderId: null,
      setCookie: false,
      ms: performance.now() - started,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    };
  }
}

/** The ids of the orders `key` created, as every URL sees them (union: each process may keep its own). */
async function ordersOf(urls: readonly string[], key: string, timeoutMs: number): Promise<string[]> {
  const ids = new Set<string>();
  for (const url of new Set(urls)) {
    const target = `${url}/orders?key=${encodeURIComponent(key)}`;
    const response = await fetch(target, { signal: AbortSignal.timeout(timeoutMs) }).catch(
      (cause: unknown) => {
        const why = cause instanceof Error ? cause.message : String(cause);
        throw new Error(`[demo] GET ${target} failed (${why}): is a demo listening at ${url}?`, { cause });
      },
    );
    if (!response.ok) throw new Error(`[demo] GET ${url}/orders?key=${key} answered ${response.status}`);
    const { orders } = (await response.json()) as { orders: Array<{ id: string }> };
    for (const order of orders) ids.add(order.id);
  }
  return [...ids];
}

function summarise(key: string, responses: BurstResponse[], orderIds: string[]): KeyResult {
  const counts: Record<Outcome, number> = { executed: 0, replayed: 0, in_flight: 0, failed: 0, error: 0 };
  for (const response of responses) counts[response.outcome]++;
  const answered = new Set(responses.flatMap((response) => (response.orderId ? [response.orderId] : [])));
  const consistent =
    answered.size <= 1 &&
    [...answered].every((id) => orderIds.includes(id)) &&
    responses.every((response) => response.outcome !== 'replayed' || !response.setCookie);
  return { key, responses, executions: orderIds.length, orderIds, counts, consistent };
}
