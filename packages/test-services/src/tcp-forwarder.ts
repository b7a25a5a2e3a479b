import net from 'node:net';

type Mode = 'open' | 'cut' | 'blackhole';

/** Options of {@link TcpForwarder.start}. */
export interface TcpForwarderOptions {
  /** Called once per connection for a function that sees each chunk its client sends (e.g. to count messages). */
  observe?: () => (chunk: Buffer) => void;
}

/**
 * A TCP forwarder between a client and a server, for tests: it can cut every connection (as when the
 * server dies) and swallow all traffic (as when the network silently drops packets, or the server hangs
 * with its connections open). The shared servers themselves are never touched.
 */
export class TcpForwarder {
  private mode: Mode = 'open';
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  /** Listen on a free local port and forward to `target`. */
  static async start(
    target: { host: string; port: number },
    options: TcpForwarderOptions = {},
  ): Promise<TcpForwarder> {
    let forwarder: TcpForwarder | undefined;
    const server = net.createServer((client) => forwarder?.accept(client, target, options.observe?.()));
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

  /**
   * Forward again. With `keepSwallowed`, connections swallowed meanwhile stay open and silent (a peer
   * that never learns its connection died); otherwise they are reset, as a real network would time them out.
   */
  restore(options: { keepSwallowed?: boolean } = {}): void {
    if (this.mode === 'blackhole' && !options.keepSwallowed) this.cut();
    this.mode = 'open';
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(
    client: net.Socket,
    target: { host: string; port: number },
    observe: ((chunk: Buffer) => void) | undefined,
  ): void {
    if (this.mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    this.sockets.add(client).add(upstream);
    // A connection swallowed once stays swallowed (its bytes are gone): it never forwards again.
    let swallowed = false;
    const open = () => {
      if (this.mode !== 'open') swallowed = true;
      return !swallowed;
    };
    client.on('data', (chunk: Buffer) => {
      if (!open()) return;
      observe?.(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (open()) client.write(chunk);
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
