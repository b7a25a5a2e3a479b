import { parseArgs } from 'node:util';
import { FRAMEWORK_NAMES, type FrameworkName, isFrameworkName } from './frameworks/server.js';
import { isStoreName, STORE_NAMES, type StoreEnv, type StoreName } from './stores.js';

/** A command line that cannot be run; the CLI prints the message and the usage, and exits with 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** What `src/main.ts` runs. */
export interface DemoCliOptions {
  help: boolean;
  framework: FrameworkName;
  store: StoreName;
  port: number;
  host: string;
}

/** Usage of `src/main.ts`. */
export const DEMO_USAGE = `Usage: pnpm demo [-- options]      (tsx src/main.ts [options] in apps/demo)

Starts the idem orders API and its page.

Options (each falls back to the environment variable shown, then to the default):
  --framework <name>  ${FRAMEWORK_NAMES.join(' | ')}           IDEM_DEMO_FRAMEWORK  default hono
  --store <name>      ${STORE_NAMES.join(' | ')}  IDEM_DEMO_STORE  default memory
  --port <n>          0 = any free port                  PORT                 default 3000
  --host <addr>       0.0.0.0 = all interfaces           HOST                 default 127.0.0.1
  -h, --help

Store addresses: IDEM_REDIS_URL (redis://127.0.0.1:6379), IDEM_PG_URL
(postgres://postgres@127.0.0.1:5432/postgres), IDEM_DYNAMODB_ENDPOINT (http://127.0.0.1:8000) and
IDEM_DYNAMODB_TABLE (idem_demo, created if missing).`;

/**
 * Parse `src/main.ts`'s arguments (without `node` and the script) with the environment's fallbacks.
 * @throws UsageError on an unknown option or value.
 */
export function parseDemoArgs(argv: readonly string[], env: StoreEnv): DemoCliOptions {
  const { values } = parseArgs({
    args: withoutSeparator(argv),
    options: {
      framework: { type: 'string' },
      store: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  return {
    help: values.help ?? false,
    framework: frameworkOption(values.framework ?? env['IDEM_DEMO_FRAMEWORK'] ?? 'hono'),
    store: storeOption(values.store ?? env['IDEM_DEMO_STORE'] ?? 'memory'),
    port: integerOption('port', values.port ?? env['PORT'] ?? '3000', 0, 65_535),
    host: values.host ?? env['HOST'] ?? '127.0.0.1',
  };
}

/** Parse a framework name. @throws UsageError */
export function frameworkOption(value: string): FrameworkName {
  if (!isFrameworkName(value)) {
    throw new UsageError(`unknown framework "${value}": use one of ${FRAMEWORK_NAMES.join(', ')}`);
  }
  return value;
}

/** Parse a store name. @throws UsageError */
export function storeOption(value: string): StoreName {
  if (!isStoreName(value))
    throw new UsageError(`unknown store "${value}": use one of ${STORE_NAMES.join(', ')}`);
  return value;
}

/** Parse an integer in `[min, max]`. @throws UsageError */
export function integerOption(name: string, value: string, min: number, max: number): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max} (got "${value}")`);
  }
  return parsed;
}

/**
 * `pnpm demo -- --store redis` hands the script a leading `--`; parseArgs would take everything after
 * it for positionals.
 */
export function withoutSeparator(argv: readonly string[]): string[] {
  return argv[0] === '--' ? argv.slice(1) : [...argv];
}

/** The message of a parseArgs or {@link UsageError} failure, or `undefined` for any other error. */
export function usageProblem(error: unknown): string | undefined {
  if (error instanceof UsageError) return error.message;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) return (error as Error).message;
  return undefined;
}
