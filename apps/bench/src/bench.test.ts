import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import {
  FRAMEWORKS,
  runLoad,
  type ServerProcess,
  serverStats,
  startServer,
  stopLoadGenerator,
} from './harness.js';
import { markdownTable } from './results.js';

afterAll(stopLoadGenerator);

/** Start `server` on a free port of 127.0.0.1 and give back its URL. */
async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

describe('markdownTable', () => {
  it('pads every cell to its column, right-aligned columns to the right', () => {
    const table = markdownTable(
      [
        ['name', 'left'],
        ['req/s', 'right'],
      ],
      [
        ['fastify', '30056'],
        ['hono', '7'],
      ],
    );
    expect(table).toEqual([
      '| name    | req/s |',
      '| ------- | ----: |',
      '| fastify | 30056 |',
      '| hono    |     7 |',
    ]);
  });
});

// The load generator writes each unique key into a copy of the request autocannon built once: every
// request must arrive whole (the body intact) with a key no other request had.
describe('the load generator', () => {
  it('sends a fresh key with every request of a unique-key slice, and the body intact', async () => {
    const keys: string[] = [];
    const bodies = new Set<string>();
    const server = createServer((request, response) => {
      keys.push(String(request.headers['idempotency-key']));
      let body = '';
      request.setEncoding('utf8');
      request.on('data', (chunk: string) => {
        body += chunk;
      });
      request.on('end', () => {
        bodies.add(body);
        response.writeHead(201, { 'content-type': 'application/json' }).end('{}');
      });
    });
    const url = await listen(server);
    try {
      const run = await runLoad(url, 1, 'unique', 4);
      expect(run.requests).toBeGreaterThan(100);
      expect(run.non2xx + run.errors).toBe(0);
      expect(keys.length).toBeGreaterThanOrEqual(run.requests);
      expect(new Set(keys).size).toBe(keys.length);
      for (const key of keys) expect(key).toMatch(/^k-\d+-[0-9a-z]+-\d{12}$/);
      expect([...bodies]).toEqual([JSON.stringify({ item: 'book', quantity: 2, note: 'benchmark order' })]);

      // The generator is one process for every slice: the next slice's keys are new ones too.
      const firstSlice = keys.length;
      await runLoad(url, 1, 'unique', 4);
      expect(keys.length).toBeGreaterThan(firstSlice + 100);
      expect(new Set(keys).size).toBe(keys.length);

      // A replay slice sends one key throughout, and a new one in each slice.
      const replayKeys = [];
      for (let i = 0; i < 2; i++) {
        const before = keys.length;
        await runLoad(url, 1, 'one', 4);
        const sliceKeys = new Set(keys.slice(before));
        expect(sliceKeys.size).toBe(1);
        replayKeys.push(...sliceKeys);
      }
      expect(new Set(replayKeys).size).toBe(2);
    } finally {
      server.close();
    }
  }, 30_000);

  it("reports a slice that cannot run as the harness's error, and runs the next slice", async () => {
    // A port nothing listens on: a replay slice's priming request fails.
    const closed = createServer();
    const closedUrl = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));
    await expect(runLoad(closedUrl, 1, 'one', 4)).rejects.toThrow(/^load generator: /);

    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => response.writeHead(201).end('{}'));
    });
    const url = await listen(server);
    try {
      const run = await runLoad(url, 1, 'unique', 4);
      expect(run.requests).toBeGreaterThan(100);
    } finally {
      server.close();
    }
  }, 30_000);
});

// The servers the bench measures: behind idem, a slice of new keys costs two store round trips per
// request and a slice of replays one, and every response is a success (a 409 or a 500 would mean the
// bench measured something else than the route).
describe.each(FRAMEWORKS)('%s bench server on the memory store', (framework) => {
  const servers: ServerProcess[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
  });

  it('serves new keys with two round trips and replays with one, all 2xx', async () => {
    const server = await startServer(framework, 'memory', 'idem');
    servers.push(server);

    const fresh = await runLoad(server.url, 1, 'unique', 4);
    const afterFresh = await serverStats(server.url);
    expect(fresh.requests).toBeGreaterThan(10);
    expect(fresh.non2xx + fresh.errors).toBe(0);
    // The server counts every request it received; autocannon leaves out of its own count the requests
    // still in flight when the slice ends (at most one per connection).
    expect(afterFresh.requests).toBeGreaterThanOrEqual(fresh.requests);
    expect(afterFresh.requests).toBeLessThanOrEqual(fresh.requests + 4);
    // Two calls per request received, but for those cut off as the slice ended (at most one per
    // connection), which may have stopped before their claim or their completion.
    expect(afterFresh.storeCalls).toBeLessThanOrEqual(2 * afterFresh.requests);
    expect(afterFresh.storeCalls).toBeGreaterThanOrEqual(2 * (afterFresh.requests - 4));

    const replays = await runLoad(server.url, 1, 'one', 4);
    const afterReplays = await serverStats(server.url);
    expect(replays.non2xx + replays.errors).toBe(0);
    // The priming request of the replay slice (in both counts) claims and completes the key (2 calls),
    // then one call per replay.
    const replayRequests = afterReplays.requests - afterFresh.requests;
    expect(replayRequests).toBeGreaterThanOrEqual(replays.requests);
    expect(replayRequests).toBeLessThanOrEqual(replays.requests + 4);
    const replayCalls = afterReplays.storeCalls - afterFresh.storeCalls;
    expect(replayCalls).toBeLessThanOrEqual(2 + (replayRequests - 1));
    expect(replayCalls).toBeGreaterThanOrEqual(2 + (replayRequests - 1) - 4);
  }, 30_000);
});

describe('the calibration server', () => {
  it('serves the bare route plus its busy work, all 2xx', async () => {
    const server = await startServer('fastify', 'memory', 'busy');
    try {
      const run = await runLoad(server.url, 1, 'unique', 4);
      expect(run.requests).toBeGreaterThan(10);
      expect(run.non2xx + run.errors).toBe(0);
      // No store: the busy server is the bare route, not idem.
      const stats = await serverStats(server.url);
      expect(stats.storeCalls).toBe(0);
      expect(stats.requests).toBeGreaterThanOrEqual(run.requests);
    } finally {
      await server.stop();
    }
  }, 30_000);
});

/** Run one of the bench's scripts as its package script does, and give back what it printed. */
async function runScript(name: string, args: string[]): Promise<string> {
  const script = fileURLToPath(new URL(`./${name}`, import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  });
  return stdout;
}

describe('the bench', () => {
  it('measures every scenario in pairs over two processes of each kind and writes the table', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'idem-bench-')), 'RESULTS.md');
    try {
      const options = { frameworks: 'hono', stores: 'memory', pairs: '2', seconds: '1', instances: '2', out };
      await runScript(
        'main.ts',
        Object.entries(options).flatMap(([name, value]) => [`--${name}`, value]),
      );
      const results = await readFile(out, 'utf8');
      expect(results).toContain('2 server processes of each kind');
      for (const [scenario, roundTrips] of [
        ['new keys', 2],
        ['replays', 1],
      ] as const) {
        // framework | store | scenario | bare req/s | idem req/s | ratio (two pairs) | ... | round trips
        const row = new RegExp(
          `\\| hono +\\| memory \\| ${scenario} +\\| +\\d+ \\| +\\d+ \\| \\*\\*\\d\\.\\d{3}\\*\\* \\(\\d\\.\\d\\d, \\d\\.\\d\\d\\) \\|.*\\| +(\\d\\.\\d\\d) / — \\|`,
        );
        expect(results).toMatch(row);
        // Per request the servers received (their own count): a replay slice's priming request adds one
        // call per slice, a few hundredths at most.
        expect(Number(results.match(row)![1])).toBeCloseTo(roundTrips, 1);
      }
    } finally {
      await rm(dirname(out), { recursive: true, force: true });
    }
  }, 120_000);
});

describe('the layer benchmark', () => {
  it('runs every scenario (each checks its own results) and reports µs per request', async () => {
    const stdout = await runScript('layer.ts', ['--rounds', '2', '--requests', '200']);
    for (const scenario of ['null store, new keys', 'memory store, new keys', 'memory store, replays']) {
      expect(stdout).toMatch(new RegExp(`${scenario} +\\d+\\.\\d\\d µs/request`));
    }
  }, 30_000);
});

describe('the record-size measurement', () => {
  it("reports a record's heap objects and bytes; the memory store keeps no string trees", async () => {
    const stdout = await runScript('record-size.ts', ['--records', '5000']);
    const total = /per record: (\d+\.\d) heap objects, (\d+) bytes/.exec(stdout);
    expect(total).not.toBeNull();
    expect(Number(total![1])).toBeGreaterThan(5);
    // 11.2 (unbounded): the record, its response and its expiry link in one object, no settlement link;
    // 17.2 as three objects and a link.
    expect(Number(total![1])).toBeLessThan(12);
    expect(Number(total![2])).toBeGreaterThan(200);
    // Node's crypto.randomUUID() tokens alone are trees of 14 strings each unless the store flattens them.
    const trees = /concatenated string +(-?\d+\.\d\d)/.exec(stdout);
    expect(Number(trees?.[1] ?? 0)).toBeLessThan(1);
  }, 60_000);
});
