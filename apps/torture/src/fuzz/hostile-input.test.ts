import { memoryStore } from '@idem/memory';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budget } from '../budget.js';
import { type HostileCase, hostileCases, judge, namedCases } from './hostile-input.js';
import { sendRaw } from './raw-http.js';
import { BINDINGS, type FuzzServer, startFuzzServer } from './servers.js';

const CASES = budget.scale(400, 10_000);

describe.each(BINDINGS)('hostile input through %s', (binding) => {
  let server: FuzzServer;
  const tried = new Map<HostileCase['category'], number>();
  const statuses = new Map<number, number>();

  beforeAll(async () => {
    server = await startFuzzServer(binding, memoryStore({ maxEntries: 100_000 }));
  });
  afterAll(async () => {
    await server?.close();
  });

  it(
    `never crashes, never answers an unexpected 5xx, and answers problems in shape (${CASES} cases)`,
    async () => {
      await fc.assert(
        fc.asyncProperty(hostileCases, async (hostile) => {
          tried.set(hostile.category, (tried.get(hostile.category) ?? 0) + 1);
          const response = await sendRaw(server.port, hostile.request);
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          const why = judge(hostile, response);
          if (why !== null) throw new Error(`${hostile.label}: ${why}`);
        }),
        { numRuns: CASES, examples: namedCases().map((hostile) => [hostile] as [HostileCase]) },
      );
      console.log(
        `[torture] fuzz ${binding}: ${[...tried.values()].reduce((a, b) => a + b, 0)} cases (` +
          [...tried].map(([category, n]) => `${category} ${n}`).join(', ') +
          `); statuses ${[...statuses]
            .sort(([a], [b]) => a - b)
            .map(([status, n]) => `${status}x${n}`)
            .join(' ')}`,
      );
    },
    budget.scale(120_000, 1_800_000),
  );

  it('still serves after the hostile input: a new key runs once, its retry is replayed', async () => {
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    const send = () =>
      fetch(`${server.url}/json?v=after`, {
        method: 'POST',
        headers: { 'idempotency-key': `after-${crypto.randomUUID()}`, 'content-type': 'application/json' },
        body: '{"a":1}',
      });
    const key = `after-${crypto.randomUUID()}`;
    const request = () =>
      fetch(`${server.url}/json?v=after`, {
        method: 'POST',
        headers: { 'idempotency-key': key, 'content-type': 'application/json' },
        body: '{"a":1}',
      });
    const first = await request();
    const second = await request();
    expect(first.status).toBe(200);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(await second.json()).toEqual(await first.json());
    expect((await send()).status).toBe(200);
  });
});
