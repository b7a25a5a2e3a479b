import { memoryStore } from '@idem/memory';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budget } from '../budget.js';
import { BINDINGS, type FuzzServer, type RouteAnswer, startFuzzServer } from './servers.js';

/**
 * No two scopes ever share a stored response. Random `Authorization` values (near-duplicates, values
 * that look like the length-prefixed hash input, absent) and a few shared keys, sent interleaved and
 * concurrently; the route echoes the scope it saw. Every answer (first run or replay) must carry the
 * requester's own scope, key and request variant, and each (scope, key) runs at most once.
 */

const RUNS = budget.scale(25, 300);

/** `null`: no Authorization header. Values as HTTP carries them (no surrounding white space). */
const authorization = fc.oneof(
  fc.constant(null),
  fc.string({
    unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
    minLength: 1,
    maxLength: 12,
  }),
  fc.constantFrom(
    'Bearer a',
    'Bearer A',
    'bearer a',
    'Bearer  a',
    'Bearer a\tb',
    '1:a',
    '0:',
    'a\\nb',
    'Basic YTpi',
    'Basic YTpj',
  ),
);

type Plan = typeof plan extends fc.Arbitrary<infer T> ? T : never;

const plan = fc.record({
  scopes: fc.uniqueArray(authorization, { minLength: 2, maxLength: 6 }),
  requests: fc.array(
    fc.record({
      scope: fc.nat(),
      key: fc.integer({ min: 0, max: 3 }),
      variant: fc.constantFrom('1', '1', '1', '2'),
    }),
    { minLength: 10, maxLength: 60 },
  ),
  concurrency: fc.integer({ min: 1, max: 12 }),
});

/** Sends the plan's requests interleaved and checks the property; returns how many replays it saw. */
async function checkPlan(
  server: FuzzServer,
  { scopes, requests, concurrency }: Plan,
): Promise<{ sent: number; replays: number }> {
  const run = crypto.randomUUID().slice(0, 8);
  const sent = requests.map((request) => ({
    scope: scopes[request.scope % scopes.length]!,
    key: `${run}-k${request.key}`,
    variant: request.variant,
  }));
  const answers: Array<{ status: number; body: string; replayed: boolean }> = new Array(sent.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < sent.length; i = next++) {
      const { scope, key, variant } = sent[i]!;
      const headers: Record<string, string> = { 'idempotency-key': key };
      if (scope !== null) headers['authorization'] = scope;
      const response = await fetch(`${server.url}/echo?v=${variant}`, { method: 'POST', headers });
      answers[i] = {
        status: response.status,
        body: await response.text(),
        replayed: response.headers.get('idempotent-replayed') === 'true',
      };
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));

  // (scope, key) -> the one execution that answered it.
  const executions = new Map<string, number>();
  const owner = new Map<number, string>();
  for (const [i, request] of sent.entries()) {
    const answer = answers[i]!;
    if (answer.status === 409 || answer.status === 422) continue; // in flight, or another variant
    expect(answer.status, answer.body).toBe(201);
    const echo = JSON.parse(answer.body) as RouteAnswer;
    // The scope the route saw is the one that sent this request: never another caller's response.
    expect(echo.scope ?? '', `request ${i} ${JSON.stringify(request)} got ${answer.body}`).toBe(
      request.scope ?? '',
    );
    expect(echo.key).toBe(request.key);
    expect(echo.variant).toBe(request.variant);
    const pair = JSON.stringify([request.scope ?? '', request.key]);
    const seen = executions.get(pair);
    if (seen === undefined) executions.set(pair, echo.execution);
    else expect(echo.execution, `(scope, key) ${pair} ran twice`).toBe(seen);
    const holder = owner.get(echo.execution);
    if (holder === undefined) owner.set(echo.execution, pair);
    else expect(holder, `execution ${echo.execution} answered two (scope, key) pairs`).toBe(pair);
  }
  return { sent: sent.length, replays: answers.filter((answer) => answer.replayed).length };
}

describe.each(BINDINGS)('scope isolation through %s', (binding) => {
  let server: FuzzServer;
  let requestsSent = 0;
  let replays = 0;

  beforeAll(async () => {
    server = await startFuzzServer(binding, memoryStore());
  });
  afterAll(async () => {
    await server?.close();
  });

  it(
    `replays a response only to the scope that caused it (${RUNS} interleaved runs)`,
    async () => {
      await fc.assert(
        fc.asyncProperty(plan, async (generated) => {
          const seen = await checkPlan(server, generated);
          requestsSent += seen.sent;
          replays += seen.replays;
        }),
        { numRuns: RUNS },
      );
      console.log(
        `[torture] scope isolation ${binding}: ${RUNS} runs, ${requestsSent} requests, ${replays} replays`,
      );
      expect(replays).toBeGreaterThan(0);
    },
    budget.scale(120_000, 1_800_000),
  );
});

describe('the scope property can fail', () => {
  it('catches a binding configured to ignore who is asking', async () => {
    const server = await startFuzzServer('hono', memoryStore(), { scope: () => '' });
    try {
      const property = fc.asyncProperty(plan, async (generated) => {
        await checkPlan(server, generated);
      });
      await expect(fc.assert(property, { numRuns: 50 })).rejects.toThrow(/scope|ran twice|answered two/);
    } finally {
      await server.close();
    }
  });
});
