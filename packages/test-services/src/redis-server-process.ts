/**
 * Private `redis-server` child processes, for the tests that must stop Redis, run a cluster or read
 * server-wide counters, so that the shared server other tests run against is never disturbed.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './free-port.js';

/** One `redis-server` child process on 127.0.0.1, without persistence, in its own temporary directory. */
export class RedisServerProcess {
  private child: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly extraArgs: readonly string[],
  ) {}

  /** Start a server on `port` (default: a free one) with extra `redis-server` arguments; resolves once it answers PING. */
  static async start(options: { port?: number; args?: readonly string[] } = {}): Promise<RedisServerProcess> {
    const port = options.port ?? (await freePort());
    const dir = await mkdtemp(join(tmpdir(), `idem-redis-${port}-`));
    const server = new RedisServerProcess(port, dir, options.args ?? []);
    await server.restart();
    return server;
  }

  /** The server's URL, `redis://127.0.0.1:<port>`. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** (Re)start the server on the same port; resolves once it answers PING. */
  async restart(): Promise<void> {
    if (this.child) throw new Error(`redis-server on port ${this.port} is already running`);
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    const child = spawn('redis-server', [...args, '--dir', this.dir, ...this.extraArgs], {
      stdio: 'ignore',
    });
    this.child = child;
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (error) =>
        reject(new Error(`could not start redis-server (is it installed and on PATH?): ${error.message}`)),
      );
      child.once('exit', (code) =>
        reject(new Error(`redis-server on port ${this.port} exited with ${code}`)),
      );
    });
    failed.catch(() => {});
    await Promise.race([failed, waitForPing(this.port)]);
  }

  /** Kill the server abruptly (SIGKILL, like a crash) and wait until it is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  }

  /** Kill the server and remove its directory. */
  async stop(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A Redis Cluster of local `redis-server` processes, one master per node and no replicas. */
export class RedisClusterProcesses {
  private constructor(readonly nodes: readonly RedisServerProcess[]) {}

  /** Start `masters` nodes, join them with `redis-cli --cluster create` and wait for `cluster_state:ok`. */
  static async start(masters = 3): Promise<RedisClusterProcesses> {
    const nodes: RedisServerProcess[] = [];
    try {
      for (let i = 0; i < masters; i++) {
        const busPort = await freePort();
        nodes.push(
          await RedisServerProcess.start({
            args: [
              '--cluster-enabled',
              'yes',
              '--cluster-config-file',
              'nodes.conf',
              '--cluster-port',
              String(busPort),
            ],
          }),
        );
      }
      await new Promise<void>((resolve, reject) =>
        execFile(
          'redis-cli',
          [
            '--cluster',
            'create',
            ...nodes.map((node) => `127.0.0.1:${node.port}`),
            '--cluster-replicas',
            '0',
            '--cluster-yes',
          ],
          { timeout: 30_000 },
          (error, stdout, stderr) =>
            error
              ? reject(new Error(`redis-cli --cluster create failed: ${stderr || stdout}`, { cause: error }))
              : resolve(),
        ),
      );
      for (const node of nodes) await waitForClusterOk(node.port);
      return new RedisClusterProcesses(nodes);
    } catch (error) {
      await Promise.all(nodes.map((node) => node.stop()));
      throw error;
    }
  }

  /** Startup nodes for an ioredis `Cluster`. */
  get startupNodes(): Array<{ host: string; port: number }> {
    return this.nodes.map((node) => ({ host: '127.0.0.1', port: node.port }));
  }

  /** Kill every node and remove their directories. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}

async function waitForPing(port: number): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if ((await ask(port, ['PING'])) === 'PONG') return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`redis-server on port ${port} did not answer PING`);
}

async function waitForClusterOk(port: number): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if ((await ask(port, ['CLUSTER', 'INFO']))?.includes('cluster_state:ok')) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`cluster node on port ${port} did not reach cluster_state:ok`);
}

/** One command on a short-lived connection; `null` when the server does not answer. */
async function ask(port: number, command: [string, ...string[]]): Promise<string | null> {
  const client = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 1_000,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return String(await client.call(...command));
  } catch {
    return null;
  } finally {
    client.disconnect();
  }
}
