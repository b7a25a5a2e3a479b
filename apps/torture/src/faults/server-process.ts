import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CONFIG_ENV, type ServerConfig } from '../server/config.js';

/** apps/torture: the servers run from here so that `--import tsx` resolves. */
const PACKAGE_DIR = fileURLToPath(new URL('../..', import.meta.url));
const ENTRY = 'src/server/main.ts';
const STARTUP_TIMEOUT_MS = 30_000;

/** A torture server running as a real child process. */
export interface ServerProcess {
  readonly name: string;
  readonly config: ServerConfig;
  readonly url: string;
  readonly pid: number;
  /** Everything it printed (stdout and stderr interleaved). */
  output(): string;
  /** Send a signal: `SIGKILL` (crash), `SIGSTOP`/`SIGCONT` (pause), ... */
  signal(signal: NodeJS.Signals): void;
  /** Resolves once the process has ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly alive: boolean;
  /** Kill it (`SIGKILL`: nothing to shut down gracefully in a test) and wait for the exit. */
  stop(): Promise<void>;
}

/**
 * Start `node --import tsx src/server/main.ts` with `config` and wait until it prints its port.
 * Its stdin is a pipe it watches: when this process dies, the server exits too.
 */
export async function spawnServer(config: ServerConfig): Promise<ServerProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', ENTRY], {
    cwd: PACKAGE_DIR,
    env: { ...process.env, [CONFIG_ENV]: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (chunk: Buffer) => {
    if (output.length < 200_000) output += chunk.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `[torture] server ${config.name} printed no port within ${STARTUP_TIMEOUT_MS} ms:\n${output}`,
        ),
      );
    }, STARTUP_TIMEOUT_MS);
    const look = () => {
      const match = /\{"ready":true,"port":(\d+)/.exec(output);
      if (!match) return;
      clearTimeout(timer);
      child.stdout?.off('data', look);
      resolve(Number(match[1]));
    };
    child.stdout?.on('data', look);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(
        new Error(`[torture] server ${config.name} exited (${code ?? signal}) before listening:\n${output}`),
      );
    });
  });
  const pid = child.pid ?? 0;
  return {
    name: config.name,
    config,
    url: `http://127.0.0.1:${port}`,
    pid,
    output: () => output,
    signal: (signal) => {
      child.kill(signal);
    },
    exited,
    get alive() {
      return child.exitCode === null && child.signalCode === null;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
