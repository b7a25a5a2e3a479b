/** The HTTP frameworks the torture server can run on. */
export type FrameworkName = 'hono' | 'fastify' | 'express';

/** Where the torture server keeps its records, and how it reaches the backend (through the proxy). */
export type StoreConfig =
  | { kind: 'memory' }
  | { kind: 'redis'; url: string; prefix: string }
  | { kind: 'postgres'; url: string; table: string; poolSize: number }
  | {
      kind: 'dynamodb';
      endpoint: string;
      region: string;
      credentials: { accessKeyId: string; secretAccessKey: string };
      table: string;
      clockSkewMs: number;
    };

/** The store kinds, as test parameters. */
export type StoreKind = StoreConfig['kind'];

/**
 * One route, `POST /work/<name>`, with its own engine settings over the shared store: a process
 * serves several profiles so that one pair of processes covers every scenario of a store.
 */
export interface ProfileConfig {
  name: string;
  leaseMs: number;
  heartbeat: boolean;
  storeTimeoutMs: number;
  /** `0`: answer `409` at once; otherwise wait up to this long for the first request's result. */
  waitMs: number;
  failOpen: boolean;
  completeRetries?: number;
}

/** Everything a torture server process needs, passed as JSON in `IDEM_TORTURE_SERVER`. */
export interface ServerConfig {
  /** A name for this process in the journals (`a`, `b`, ...). */
  name: string;
  framework: FrameworkName;
  store: StoreConfig;
  profiles: ProfileConfig[];
  /** Append-only JSON-lines file of handler runs, shared by every process of a test file. */
  runsFile: string;
  /** Append-only JSON-lines file of engine events, shared likewise. */
  eventsFile: string;
  /** Directory where gate files appear (a handler waiting on gate `g` ends when `<gateDir>/g` exists). */
  gateDir: string;
}

/** The environment variable that carries the {@link ServerConfig}. */
export const CONFIG_ENV = 'IDEM_TORTURE_SERVER';

/** Read the {@link ServerConfig} from the environment. */
export function readConfig(env: NodeJS.ProcessEnv): ServerConfig {
  const raw = env[CONFIG_ENV];
  if (!raw) throw new Error(`[torture] ${CONFIG_ENV} is not set`);
  const config = JSON.parse(raw) as ServerConfig;
  if (!config.profiles?.length) throw new Error('[torture] the server needs at least one profile');
  return config;
}

/** Request headers the `/work` routes obey (not part of the fingerprint, so retries may change them). */
export const WORK_HEADERS = {
  /** How long the handler works, in ms. */
  delayMs: 'x-work-ms',
  /** A gate name: the handler works until the gate file exists (then ends at once). */
  gate: 'x-work-gate',
} as const;

/** What a handler answers with `201`; a replay carries the same body, so `run` tells executions apart. */
export interface WorkResult {
  run: string;
  server: string;
  pid: number;
  key: string;
}
