import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const benchDir = fileURLToPath(new URL('..', import.meta.url));

/**
 * The frameworks the bench can measure, each bare and behind idem. `fastify-preparsing` is Fastify with
 * the plugin's `decideIn: 'preParsing'` (replays and problems answered before the body is parsed); it
 * runs with `--full` or when asked for (`--frameworks fastify,fastify-preparsing`), not in the quick run.
 */
export const FRAMEWORKS = ['fastify', 'fastify-preparsing', 'hono', 'express'] as const;
export type Framework = (typeof FRAMEWORKS)[number];
/** What the quick `pnpm bench` measures without `--frameworks` (`--full` measures all of FRAMEWORKS). */
export const DEFAULT_FRAMEWORKS: readonly Framework[] = FRAMEWORKS.filter(
  (name) => name !== 'fastify-preparsing',
);

/**
 * How the server serves `POST /orders`: the bare route, behind idem, or the bare route plus
 * {@link BUSY_MICROS} µs of busy work per request (the calibration line of RESULTS.md).
 */
export const SERVER_MODES = ['bare', 'idem', 'busy'] as const;
export type ServerMode = (typeof SERVER_MODES)[number];
/**
 * The busy work per request of a `busy` server, in µs: less than `layer` measures for idem's own work per
 * new key on the memory store.
 */
export const BUSY_MICROS = 5;

/** Cores to pin the server and the load generator to, when the machine has two or more. */
export const PINNING = { server: '0', generator: '1' };

function pinned(args: string[], core: string): [string, string[]] {
  return process.platform === 'linux' ? ['taskset', ['-c', core, ...args]] : [args[0]!, args.slice(1)];
}

/** A benchmark server child process, pinned to the server core. */
export interface ServerProcess {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Start a server. With `profileDir`, it runs under `node --cpu-prof` and writes its profiles into
 * `<profileDir>/<framework>-<store>-<mode>/` when stopped (one per thread: the server's is the
 * largest, the other is tsx's loader thread).
 */
export async function startServer(
  framework: string,
  store: string,
  mode: ServerMode,
  profileDir?: string,
): Promise<ServerProcess> {
  // Node with tsx's loader in-process (not the tsx CLI, which runs the server in a second process),
  // so that --cpu-prof and signals reach the server itself.
  const profile = profileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, `${framework}-${store}-${mode}`)}`]
    : [];
  const [command, args] = pinned(
    [process.execPath, ...profile, '--import', 'tsx', `${here}server.ts`, framework, store, mode],
    PINNING.server,
  );
  const child = spawn(command, args, {
    cwd: benchDir,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, NODE_ENV: 'production', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  });
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) =>
      reject(new Error(`${framework}/${store}/${mode} server exited with ${code}`)),
    );
    lines.on('line', (line) => {
      const match = /^READY (\d+)$/.exec(line);
      if (match) resolve(Number(match[1]));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

/** What one load slice measured. */
export interface LoadResult {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  generatorCpu: number;
}

/** The keys of a load slice: a fresh `Idempotency-Key` per request, or one key for all (replays). */
export type KeyMode = 'unique' | 'one';

/** One load slice, as the harness asks the load generator for it (see load.ts). */
export interface LoadSlice {
  /** The route to load, `POST` with a small JSON order. */
  url: string;
  seconds: number;
  keys: KeyMode;
  connections: number;
  /** A fixed offered load (requests per second, all connections together) instead of as fast as possible. */
  rate?: number;
}

let generator: ChildProcess | undefined;
let sliceRunning = false;

/**
 * The load generator process, pinned to the generator core: started by the first slice and kept for
 * the next ones. It holds the event loop only while a slice runs, and it exits when this process does
 * (or on {@link stopLoadGenerator}).
 */
function loadGenerator(): ChildProcess {
  if (generator?.connected) return generator;
  // Node with tsx's loader in-process: the tsx CLI would start a second Node.
  const [command, args] = pinned([process.execPath, '--import', 'tsx', `${here}load.ts`], PINNING.generator);
  const child = spawn(command, args, { cwd: benchDir, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.unref();
  child.channel?.unref();
  generator = child;
  return child;
}

/** Run one load slice in the load generator's process; one slice at a time. */
export async function runLoad(
  url: string,
  seconds: number,
  keys: KeyMode,
  connections: number,
  rate?: number,
): Promise<LoadResult> {
  if (sliceRunning) throw new Error('runLoad: one load slice at a time (the generator has one core)');
  sliceRunning = true;
  const child = loadGenerator();
  child.channel?.ref();
  try {
    const slice: LoadSlice = {
      url: `${url}/orders`,
      seconds,
      keys,
      connections,
      ...(rate !== undefined && { rate }),
    };
    const reply = await new Promise<{ result?: LoadResult; error?: string }>((resolve, reject) => {
      const onMessage = (message: { result?: LoadResult; error?: string }) => {
        child.off('exit', onExit);
        resolve(message);
      };
      const onExit = (code: number | null) => {
        child.off('message', onMessage);
        reject(new Error(`load generator exited with ${code}`));
      };
      child.once('message', onMessage);
      child.once('exit', onExit);
      child.send(slice);
    });
    if (reply.error !== undefined) throw new Error(`load generator: ${reply.error}`);
    return reply.result!;
  } finally {
    child.channel?.unref();
    sliceRunning = false;
  }
}

/** Stop the load generator process, if one runs (the next slice starts another). */
export async function stopLoadGenerator(): Promise<void> {
  const child = generator;
  generator = undefined;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  // Held until it has exited (an unref'd child alone would let this process end first).
  child.ref();
  const exited = once(child, 'exit');
  child.disconnect();
  await exited;
}

/**
 * What a server process counted so far: the `POST /orders` requests it received, the store round trips
 * it made (0 without idem) and its CPU time (user + system, µs).
 */
export interface ServerStats {
  requests: number;
  storeCalls: number;
  cpuMicros: number;
}

export async function serverStats(url: string): Promise<ServerStats> {
  const response = await fetch(`${url}/__stats`);
  return (await response.json()) as ServerStats;
}
