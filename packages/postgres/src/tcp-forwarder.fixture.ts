import net from 'node:net';

type Mode = 'open' | 'cut' | 'blackhole';

/**
 * A TCP forwarder between a pool and PostgreSQL, for tests: it can cut every connection (as when the
 * server dies), swallow all traffic (as when the network silently drops packets), and count the
 * round trips clients start (each `Sync` or simple `Query` message is one: the client then waits for
 * `ReadyForQuery`). The shared PostgreSQL itself is never touched.
 */
export class TcpForwarder {
  /** Round trips started by clients since the last `resetCount()`. */
  roundTrips = 0;
  private mode: Mode = 'open';
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  /** Listen on a free local port and forward to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpForwarder> {
    let forwarder: TcpForwarder | undefined;
    const server = net.createServer((client) => forwarder?.accept(client, target));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    forwarder = new TcpForwarder(server, port);
    return forwarder;
  }

  /** `url` with its host and port pointed at this forwarder. */
  rewrite(url: string): string {
    const parsed = new URL(url);
    parsed.hostname = '127.0.0.1';
    parsed.port = String(this.port);
    return parsed.toString();
  }

  resetCount(): void {
    this.roundTrips = 0;
  }

  /** Reset every connection and refuse new ones (reset at once) until `restore()`. */
  cut(): void {
    this.mode = 'cut';
    for (const socket of this.sockets) socket.resetAndDestroy();
    this.sockets.clear();
  }

  /** Keep connections open but forward nothing, and never answer new ones, until `restore()`. */
  blackhole(): void {
    this.mode = 'blackhole';
  }

  /** Forward again. Connections swallowed meanwhile are reset, as a real network would time them out. */
  restore(): void {
    if (this.mode === 'blackhole') this.cut();
    this.mode = 'open';
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket, target: { host: string; port: number }): void {
    if (this.mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    this.sockets.add(client).add(upstream);
    const countMessages = frontendMessageCounter(() => this.roundTrips++);
    client.on('data', (chunk) => {
      if (this.mode !== 'open') return;
      countMessages(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (this.mode === 'open') client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', close);
      socket.on('close', close);
    }
  }
}

/**
 * Split the client-to-server byte stream into protocol messages and call `onRoundTrip` for each
 * `Sync` ('S') and simple `Query` ('Q'). The first message (startup) has no type byte.
 */
function frontendMessageCounter(onRoundTrip: () => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  let started = false;
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      if (!started) {
        if (pending.length < 4) return;
        const length = pending.readInt32BE(0);
        if (pending.length < length) return;
        pending = pending.subarray(length);
        started = true;
        continue;
      }
      if (pending.length < 5) return;
      const length = pending.readInt32BE(1);
      if (pending.length < 1 + length) return;
      const type = String.fromCharCode(pending[0]!);
      if (type === 'S' || type === 'Q') onRoundTrip();
      pending = pending.subarray(1 + length);
    }
  };
}
