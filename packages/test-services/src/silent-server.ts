import net from 'node:net';

/**
 * A TCP server on a free local port that accepts connections, reads what they send and never answers:
 * a hung server, or a proxy in front of a dead one, for tests of what a client does then.
 */
export class SilentServer {
  /** Connections accepted so far. */
  accepted = 0;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(): Promise<SilentServer> {
    let silent: SilentServer | undefined;
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.on('close', () => silent?.sockets.delete(socket));
      socket.resume();
      if (silent === undefined) return;
      silent.accepted++;
      silent.sockets.add(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    silent = new SilentServer(server, (server.address() as net.AddressInfo).port);
    return silent;
  }

  /** Close every connection (the server keeps accepting new ones, and answers them no more). */
  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
