import net from 'node:net';

/** Where a {@link FaultProxy} forwards to. */
export interface ProxyTarget {
  host: string;
  port: number;
}

/** Connection counters of a {@link FaultProxy}, since it started. */
export interface ProxyStats {
  /** Connections accepted and forwarded. */
  accepted: number;
  /** Connections reset on arrival while `refuse` was on. */
  refused: number;
  /** Connections destroyed by `cut()`. */
  cut: number;
  /** Connections destroyed by `dropResponses` as a response's first bytes arrived (one per response lost). */
  dropped: number;
  /** Forwarded connections open right now. */
  active: number;
  /** Bytes forwarded client -> target and target -> client. */
  bytesUp: number;
  bytesDown: number;
}

/**
 * A fault-injecting TCP proxy for tests: it listens on a free local port and forwards every connection
 * to a target, byte for byte, until told to misbehave. It stands between application processes and a
 * shared Redis, PostgreSQL or DynamoDB Local, so that a test can break "the network" without ever
 * touching the shared server.
 *
 * - {@link cut}: reset every open connection (as when the server dies or a link drops).
 * - {@link refuse}: reset new connections on arrival (as when the server is down).
 * - {@link latency}: delay every chunk, in both directions (so a round trip gains twice the delay).
 * - {@link stall}: forward nothing and answer nothing, but keep every socket open (a silent network);
 *   what arrives meanwhile is held and delivered in order when the stall ends, as TCP retransmission
 *   would after a partition heals.
 * - {@link dropResponses}: let requests through, and reset some connections as their response begins
 *   (the server did the work, the client never hears of it).
 * - {@link restore}: all of the above off.
 */
export class FaultProxy {
  private refusing = false;
  private stalled = false;
  private delayMs = 0;
  private dropProbability = 0;
  private dropRandom: () => number = Math.random;
  private readonly links = new Set<Link>();
  private readonly counters = { accepted: 0, refused: 0, cut: 0, dropped: 0, bytesUp: 0, bytesDown: 0 };

  private constructor(
    private readonly server: net.Server,
    private readonly target: ProxyTarget,
    /** The local port the proxy listens on. */
    readonly port: number,
  ) {
    server.on('connection', (socket) => this.accept(socket));
  }

  /** Listen on a free port of 127.0.0.1 and forward to `target`. */
  static async start(target: ProxyTarget): Promise<FaultProxy> {
    const server = net.createServer({ noDelay: true, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new FaultProxy(server, target, (server.address() as net.AddressInfo).port);
  }

  /** The proxy's own host (always `127.0.0.1`). */
  get host(): string {
    return '127.0.0.1';
  }

  /** `url` (e.g. `redis://127.0.0.1:6379/0`) with its host and port pointed at this proxy. */
  rewrite(url: string): string {
    const parsed = new URL(url);
    parsed.hostname = this.host;
    parsed.port = String(this.port);
    return parsed.toString();
  }

  /** Reset every open connection now; returns how many. New connections are still accepted (see `refuse`). */
  cut(): number {
    const links = [...this.links];
    for (const link of links) link.reset();
    this.counters.cut += links.length;
    return links.length;
  }

  /** While on, every new connection is reset as soon as it arrives; open ones are left alone. */
  refuse(on = true): void {
    this.refusing = on;
  }

  /** Delay every chunk by `ms` in each direction from now on (0: none). Order is always kept. */
  latency(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`[torture] latency must be >= 0, got ${ms}`);
    this.delayMs = ms;
  }

  /**
   * While on, nothing is forwarded in either direction and new connections are accepted but get no
   * answer; sockets stay open. Turning it off delivers what was held, in order.
   */
  stall(on = true): void {
    this.stalled = on;
    if (!on) for (const link of this.links) link.pump();
  }

  /**
   * From now on, when a response starts to arrive from the target, reset both sockets instead of
   * forwarding it, with `probability` (0: never, 1: always) drawn from `random` once per response. The
   * request did reach the target, which has already processed it: this is the lost response of a
   * dropped link or a proxy timing out, the case retries with one idempotency key exist for.
   *
   * A response is the target's first bytes after the client last sent some, so this fits
   * request/response protocols without pipelining (HTTP/1.1, Redis, PostgreSQL); bytes the target sends
   * before the client said anything (a greeting) are never dropped.
   */
  dropResponses(probability: number, random: () => number = Math.random): void {
    if (!(probability >= 0 && probability <= 1)) {
      throw new RangeError(`[torture] drop probability must be within [0, 1], got ${probability}`);
    }
    this.dropProbability = probability;
    this.dropRandom = random;
  }

  /** Back to a plain forwarder: no refusal, no latency, no stall (held data is delivered), no drops. */
  restore(): void {
    this.refusing = false;
    this.delayMs = 0;
    this.dropProbability = 0;
    this.stall(false);
  }

  /** A snapshot of the counters. */
  stats(): ProxyStats {
    return { ...this.counters, active: this.links.size };
  }

  /** Stop listening and reset every open connection. */
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    if (this.refusing) {
      this.counters.refused++;
      client.resetAndDestroy();
      return;
    }
    this.counters.accepted++;
    const upstream = net.connect({
      host: this.target.host,
      port: this.target.port,
      noDelay: true,
      allowHalfOpen: true,
    });
    const link = new Link(client, upstream, {
      delayMs: () => this.delayMs,
      stalled: () => this.stalled,
      dropResponse: () => {
        if (this.dropProbability === 0 || this.dropRandom() >= this.dropProbability) return false;
        this.counters.dropped++;
        return true;
      },
      forwarded: (direction, bytes) => {
        if (direction === 'up') this.counters.bytesUp += bytes;
        else this.counters.bytesDown += bytes;
      },
      closed: () => this.links.delete(link),
    });
    this.links.add(link);
  }
}

interface LinkControl {
  delayMs(): number;
  stalled(): boolean;
  /** A response starts to arrive: whether to reset the link instead of forwarding it. */
  dropResponse(): boolean;
  forwarded(direction: 'up' | 'down', bytes: number): void;
  closed(): void;
}

/** One proxied connection: a client socket, its upstream socket, and a delayed pipe each way. */
class Link {
  private readonly up: Pipe;
  private readonly down: Pipe;
  private done = false;

  constructor(
    private readonly client: net.Socket,
    private readonly upstream: net.Socket,
    control: LinkControl,
  ) {
    // Registered before the pipes' listeners, so that a dropped response's first chunk is never queued
    // for the client: the reset clears the pipes, and the down pipe then finds its client destroyed.
    let requestSent = false;
    client.on('data', () => {
      requestSent = true;
    });
    upstream.on('data', () => {
      if (!requestSent) return;
      requestSent = false;
      if (control.dropResponse()) this.reset();
    });
    this.up = new Pipe(client, upstream, control, 'up');
    this.down = new Pipe(upstream, client, control, 'down');
    // An error on one side (a refused upstream, a reset) is passed on as a reset of the other side, as
    // a real network path would; a clean close (FIN) is passed on by the pipes after their data (both
    // sockets allow half-open connections, so one direction may end while the other still flows).
    for (const [socket, pipe] of [
      [client, this.up],
      [upstream, this.down],
    ] as const) {
      socket.on('error', () => this.reset());
      socket.on('close', () => {
        if (!pipe.ended) this.reset();
        if (client.destroyed && upstream.destroyed && !this.done) {
          this.done = true;
          control.closed();
        }
      });
    }
  }

  pump(): void {
    this.up.pump();
    this.down.pump();
  }

  reset(): void {
    this.up.clear();
    this.down.clear();
    if (!this.client.destroyed) this.client.resetAndDestroy();
    if (!this.upstream.destroyed) this.upstream.resetAndDestroy();
  }
}

/** One direction of a link: chunks wait in order until due (latency) and while stalled. */
class Pipe {
  /** The source sent FIN. */
  ended = false;
  private readonly queue: Array<{ chunk: Buffer; due: number }> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly control: LinkControl,
    private readonly direction: 'up' | 'down',
  ) {
    from.on('data', (chunk: Buffer) => {
      this.queue.push({ chunk, due: Date.now() + control.delayMs() });
      this.pump();
    });
    from.on('end', () => {
      this.ended = true;
      this.pump();
    });
  }

  pump(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.control.stalled() || this.to.destroyed) return;
    const now = Date.now();
    for (let head = this.queue[0]; head; head = this.queue[0]) {
      if (head.due > now) {
        this.timer = setTimeout(() => this.pump(), head.due - now);
        return;
      }
      this.queue.shift();
      this.control.forwarded(this.direction, head.chunk.length);
      if (!this.to.write(head.chunk) && !this.from.isPaused()) {
        this.from.pause();
        this.to.once('drain', () => this.from.resume());
      }
    }
    if (this.ended && !this.to.writableEnded) this.to.end();
  }

  clear(): void {
    this.queue.length = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
