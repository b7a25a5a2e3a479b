import { WORK_HEADERS, type WorkResult } from '../server/config.js';
import type { ServerProcess } from './server-process.js';
import type { ProfileName } from './targets.js';

/** What one request got, and when. */
export interface Outcome {
  key: string;
  /** The server's name (`a`, `b`). */
  server: string;
  /** The HTTP status; `0` when the request failed without an answer (connection reset, timeout). */
  status: number;
  /** `Idempotent-Replayed: true`. */
  replayed: boolean;
  /** The execution the body names (a `201` or its replay); `null` otherwise. */
  run: string | null;
  /** The problem `code` of idem's own answers (`in_flight`, `store_unavailable`, ...). */
  code: string | null;
  retryAfter: string | null;
  startedAt: number;
  endedAt: number;
  ms: number;
  error?: string;
}

/** How a `/work` handler should behave for this request (headers, not part of the fingerprint). */
export interface WorkOptions {
  /** The handler works this long. */
  delayMs?: number;
  /** The handler works until this gate opens (`FaultTarget.openGate`). */
  gate?: string;
  /** Give up (status 0) after this long. Default 60 s. */
  timeoutMs?: number;
}

/** `POST /work/<profile>` with `Idempotency-Key: key` and a body fixed per key (so retries match). */
export async function post(
  server: ServerProcess,
  profile: ProfileName,
  key: string,
  options: WorkOptions = {},
): Promise<Outcome> {
  const startedAt = Date.now();
  const headers: Record<string, string> = { 'content-type': 'application/json', 'idempotency-key': key };
  if (options.delayMs) headers[WORK_HEADERS.delayMs] = String(options.delayMs);
  if (options.gate) headers[WORK_HEADERS.gate] = options.gate;
  const base = { key, server: server.name, startedAt };
  try {
    const response = await fetch(`${server.url}/work/${profile}`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ order: key }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
    });
    const text = await response.text();
    const endedAt = Date.now();
    const body = parse(text);
    return {
      ...base,
      status: response.status,
      replayed: response.headers.get('idempotent-replayed') === 'true',
      run: response.status === 201 ? ((body as WorkResult | null)?.run ?? null) : null,
      code: (body as { code?: string } | null)?.code ?? null,
      retryAfter: response.headers.get('retry-after'),
      endedAt,
      ms: endedAt - startedAt,
    };
  } catch (error) {
    const endedAt = Date.now();
    return {
      ...base,
      status: 0,
      replayed: false,
      run: null,
      code: null,
      retryAfter: null,
      endedAt,
      ms: endedAt - startedAt,
      error:
        error instanceof Error
          ? `${error.message} ${String((error as { cause?: unknown }).cause ?? '')}`
          : String(error),
    };
  }
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Options of {@link runLoad}. */
export interface LoadOptions {
  servers: readonly ServerProcess[];
  profile: ProfileName;
  /** Concurrent clients per server. */
  workersPerServer: number;
  /** Each client sends at most one request per this many ms (a client that backs off a little). */
  paceMs: number;
  /** The handler's work per request. */
  delayMs: number;
  /** Prefix of the fresh key every request gets. */
  keyPrefix: string;
}

/** A running load: every request has its own key; `stop()` ends it and returns every outcome. */
export interface Load {
  outcomes: Outcome[];
  stop(): Promise<Outcome[]>;
}

/** Start a steady load of fresh-key requests against every server. */
export function runLoad(options: LoadOptions): Load {
  const outcomes: Outcome[] = [];
  let running = true;
  let sequence = 0;
  const worker = async (server: ServerProcess) => {
    while (running) {
      const started = Date.now();
      outcomes.push(
        await post(server, options.profile, `${options.keyPrefix}-${sequence++}`, {
          delayMs: options.delayMs,
        }),
      );
      const rest = options.paceMs - (Date.now() - started);
      if (rest > 0 && running) await new Promise((resolve) => setTimeout(resolve, rest));
    }
  };
  const workers = options.servers.flatMap((server) =>
    Array.from({ length: options.workersPerServer }, () => worker(server)),
  );
  return {
    outcomes,
    stop: async () => {
      running = false;
      await Promise.all(workers);
      return outcomes;
    },
  };
}
