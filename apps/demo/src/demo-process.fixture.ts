import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** apps/demo, where `pnpm demo` runs `tsx src/main.ts`. */
export const DEMO_DIR = fileURLToPath(new URL('..', import.meta.url));
const TSX_CLI = createRequire(import.meta.url).resolve('tsx/cli');

/** A command of apps/demo run as a user would: `tsx src/<script> ...args`. */
export interface ScriptProcess {
  child: ChildProcess;
  /** Everything printed so far (stdout and stderr interleaved). */
  output(): string;
  /** Resolves with the exit code (or the signal) once the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Run `tsx src/<script> ...args` in apps/demo with `env` added to this process's environment. */
export function runScript(
  script: string,
  args: readonly string[],
  env: Record<string, string> = {},
): ScriptProcess {
  const child = spawn(process.execPath, [TSX_CLI, `src/${script}`, ...args], {
    cwd: DEMO_DIR,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

/** A demo started with `tsx src/main.ts`, and the URL it printed. */
export interface DemoProcess extends ScriptProcess {
  url: string;
  /** Send `signal` (default SIGTERM) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `tsx src/main.ts --port 0 ...args` and wait until it prints where it listens. */
export async function spawnDemo(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<DemoProcess> {
  const script = runScript('main.ts', ['--port', '0', ...args], env);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      script.child.kill('SIGKILL');
      reject(new Error(`the demo printed no URL within 30 s:\n${script.output()}`));
    }, 30_000);
    const look = () => {
      const match = /listening on (http:\/\/\S+)/.exec(script.output());
      if (!match) return;
      clearTimeout(timer);
      script.child.stdout?.off('data', look);
      resolve(match[1]!);
    };
    script.child.stdout?.on('data', look);
    script.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(
        new Error(`the demo exited (code ${code}, signal ${signal}) before listening:\n${script.output()}`),
      );
    });
  });
  return {
    ...script,
    url,
    stop: (signal = 'SIGTERM') => {
      if (script.child.exitCode === null && script.child.signalCode === null) script.child.kill(signal);
      return script.exited;
    },
  };
}

/** `POST /orders` with `key` (when given) and a JSON `body`. */
export function postOrder(url: string, key: string | null, body: unknown): Promise<Response> {
  return fetch(`${url}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key !== null && { 'idempotency-key': key }) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** `GET /orders?key=`: the orders created under `key` and the handler's runs for it. */
export async function ordersFor(
  url: string,
  key: string,
): Promise<{
  executions: number;
  attempts: number;
  orders: Array<{ id: string; key: string; attempt: number }>;
}> {
  const response = await fetch(`${url}/orders?key=${encodeURIComponent(key)}`);
  if (!response.ok) throw new Error(`GET /orders?key=${key}: ${response.status}`);
  return response.json() as never;
}

/** A key no other test run uses. */
export function uniqueKey(label: string): string {
  return `${label}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
