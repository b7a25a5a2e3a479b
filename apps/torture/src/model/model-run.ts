import type { Claim, Store, StoredResponse } from '@idem/core';
import fc from 'fast-check';
import {
  boundaries,
  identity,
  type ModelClock,
  type ModelOperation,
  type ModelRecord,
  type Observation,
  predict,
  show,
  showModel,
} from './reference-model.js';

/** A store under model test, with the clock facts the model needs. */
export interface ModelTarget {
  store: Store;
  clock: ModelClock;
  /**
   * Operations are kept this far (ms) from every boundary of the model, by sleeping past it, so that
   * a call is rarely ambiguous. Raise it for backends with slow or jittery calls.
   */
  guardMs: number;
}

/** How many sequences to run, and how. */
export interface ModelRunOptions {
  /** Sequences per lane. */
  sequencesPerLane: number;
  /** Lanes run at the same time, each its own fast-check run on its own keys (time is mostly sleeping). */
  lanes: number;
  /** Longest sequence, in commands. */
  maxCommands: number;
  /** Fixed seed of lane 0 (others use seed + lane), to replay a reported failure. */
  seed?: number;
}

/** What a model run did, for the report. */
export interface ModelRunStats {
  sequences: number;
  commands: number;
  storeCalls: number;
  /** Calls whose window straddled a boundary, so that more than one answer was legal. */
  ambiguousCalls: number;
  sleptMs: number;
  /** How often each situation and outcome was met (`completed: claim -> replay`, ...). */
  outcomes: Map<string, number>;
}

type TokenRef = 'holder' | 'stale' | 'refused' | 'unknown';

/** One generated step. Keys and fingerprints are indices; tokens are resolved when the step runs. */
export type Step =
  | { kind: 'claim'; key: number; fingerprint: number; leaseMs: number; ttlMs: number }
  | { kind: 'complete'; key: number; token: TokenRef; response: StoredResponse; ttlMs: number }
  | { kind: 'release'; key: number; token: TokenRef; ttlMs: number }
  | { kind: 'extend'; key: number; token: TokenRef; leaseMs: number }
  | { kind: 'get'; key: number }
  | { kind: 'delete'; key: number }
  | { kind: 'sleep'; ms: number };

const KEYS = 2;
const FINGERPRINTS = ['fp-a', 'fp-b'] as const;

/** The model of one sequence: per key, the candidate states and the tokens handed out so far. */
class SequenceModel {
  readonly keys = Array.from({ length: KEYS }, () => ({
    candidates: [null] as Array<ModelRecord | null>,
    /** Tokens of successful claims, oldest first; the last one is the presumed holder. */
    granted: [] as string[],
    refused: [] as string[],
  }));
}

/** The real side of one sequence: the store and this sequence's own keys. */
interface SequenceReal {
  store: Store;
  keys: string[];
  nextToken: () => string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs random sequences of claim / complete / release / extend / get / delete / sleep against a real
 * store and checks every answer against the reference model (core's `transition`). Throws with the
 * shrunk counterexample (fast-check's report) on the first divergence.
 */
export async function runModel(target: ModelTarget, options: ModelRunOptions): Promise<ModelRunStats> {
  const stats: ModelRunStats = {
    sequences: 0,
    commands: 0,
    storeCalls: 0,
    ambiguousCalls: 0,
    sleptMs: 0,
    outcomes: new Map(),
  };
  const arbitrary = fc.commands([stepArbitrary().map((step) => new StepCommand(step, target, stats))], {
    maxCommands: options.maxCommands,
    size: 'max',
  });
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const lanes = Array.from({ length: options.lanes }, (_, lane) =>
    fc.assert(
      fc.asyncProperty(arbitrary, async (commands) => {
        const real: SequenceReal = {
          store: target.store,
          keys: Array.from({ length: KEYS }, (_, i) => `torture:model:${crypto.randomUUID()}:${i}`),
          nextToken: tokens(),
        };
        await fc.asyncModelRun(() => ({ model: new SequenceModel(), real }), commands);
      }),
      {
        numRuns: options.sequencesPerLane,
        seed: seed + lane,
        // The counterexample's commands, printed by fast-check, are the steps' `toString`.
        verbose: 0,
      },
    ),
  );
  const results = await Promise.allSettled(lanes);
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) {
    const error = (failed as PromiseRejectedResult).reason as Error;
    // fast-check keeps the shrunk case's own error as the cause: put it in the message, where it is read.
    const cause =
      error.cause instanceof Error ? `\n\nWhat the shrunk counterexample did:\n${error.cause.message}` : '';
    throw new Error(`${error.message}${cause}`, { cause: error });
  }
  stats.sequences = options.lanes * options.sequencesPerLane;
  return stats;
}

function tokens(): () => string {
  const run = crypto.randomUUID().slice(0, 8);
  let n = 0;
  return () => `${run}-t${++n}`;
}

/** The generator of steps; durations in ms. */
export function stepArbitrary(): fc.Arbitrary<Step> {
  const key = fc.integer({ min: 0, max: KEYS - 1 });
  const token = fc.constantFrom<TokenRef>('holder', 'holder', 'holder', 'stale', 'refused', 'unknown');
  const leaseMs = fc.constantFrom(150, 300);
  const ttlMs = fc.constantFrom(400, 800);
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('claim' as const),
        key,
        fingerprint: fc.constantFrom(0, 0, 1),
        leaseMs,
        ttlMs,
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('complete' as const),
        key,
        token,
        response: responseArbitrary(),
        ttlMs,
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const), key, token, ttlMs }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('extend' as const), key, token, leaseMs }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('get' as const), key }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('sleep' as const),
        ms: fc.integer({ min: 20, max: 900 }),
      }),
    },
  );
}

/** Header values as HTTP can carry them: Latin-1 without control characters except tab. */
const headerChar = fc
  .oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0xa0, max: 0xff }), fc.constant(0x09))
  .map((code) => String.fromCharCode(code));

/** Responses as stores must keep them: any status, repeated headers in order, any bytes, omitted bodies. */
export function responseArbitrary(): fc.Arbitrary<StoredResponse> {
  const headers = fc.array(
    fc.tuple(
      fc.constantFrom('content-type', 'x-trace', 'link', 'x-a', 'etag'),
      fc.string({ unit: headerChar, maxLength: 40 }),
    ),
    { maxLength: 4 },
  );
  const body = fc.oneof(
    { weight: 4, arbitrary: fc.uint8Array({ maxLength: 48 }) },
    // Long and compressible: DynamoDB gzips bodies from 1 KiB.
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer({ min: 1024, max: 4096 }), fc.uint8Array({ minLength: 1, maxLength: 8 }))
        .map(([length, pattern]) => Uint8Array.from({ length }, (_, i) => pattern[i % pattern.length]!)),
    },
  );
  return fc
    .record({
      status: fc.integer({ min: 200, max: 599 }),
      headers,
      body,
      omitted: fc.option(fc.constantFrom('too_large' as const, 'streaming' as const), { freq: 6 }),
    })
    .map(({ status, headers, body, omitted }) =>
      omitted === null
        ? { status, headers: headers as Array<[string, string]>, body }
        : { status, headers: headers as Array<[string, string]>, body: new Uint8Array(0), omitted },
    );
}

class StepCommand implements fc.AsyncCommand<SequenceModel, SequenceReal> {
  constructor(
    readonly step: Step,
    private readonly target: ModelTarget,
    private readonly stats: ModelRunStats,
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: SequenceModel, real: SequenceReal): Promise<void> {
    const { step, stats } = this;
    stats.commands++;
    if (step.kind === 'sleep') {
      stats.sleptMs += step.ms;
      await sleep(step.ms);
      return;
    }
    const key = model.keys[step.key]!;
    const storageKey = real.keys[step.key]!;
    await this.awayFromBoundaries(key.candidates);

    const operation = this.operation(step, key, real);
    const t0 = Date.now();
    const actual = await perform(real.store, storageKey, operation);
    const t1 = Date.now();
    stats.storeCalls++;
    const resolution = this.target.clock.resolutionMs;
    const window = { lo: t0 - resolution, hi: t1 + resolution };

    const survivors = new Map<string, ModelRecord | null>();
    const rejected: string[] = [];
    let worlds = 0;
    for (const candidate of key.candidates) {
      for (const prediction of predict(candidate, operation, window, this.target.clock)) {
        worlds++;
        const why = prediction.mismatch(actual);
        if (why === null) {
          stats.outcomes.set(prediction.label, (stats.outcomes.get(prediction.label) ?? 0) + 1);
          const next = prediction.next(actual);
          survivors.set(identity(next), next);
        } else rejected.push(`  ${prediction.describe()}\n    but: ${why}`);
      }
    }
    if (worlds > 1) stats.ambiguousCalls++;
    if (survivors.size === 0) {
      throw new Error(
        `[torture] ${this.target.store.name} diverged from the reference model at ${this} ` +
          `(store time within [${window.lo}, ${window.hi}]):\n` +
          `  the store answered: ${show(actual)}\n` +
          `  model state(s) before: ${key.candidates.map(showModel).join(' | ')}\n` +
          `  the model allowed:\n${rejected.join('\n')}`,
      );
    }
    key.candidates = [...survivors.values()];
    if (operation.type === 'claim') {
      if (actual.kind === 'acquire' && actual.acquired) key.granted.push(operation.claim.token);
      else key.refused.push(operation.claim.token);
    }
  }

  /** Sleep until no boundary of any candidate is within `guardMs` of now. */
  private async awayFromBoundaries(candidates: Array<ModelRecord | null>): Promise<void> {
    const guard = this.target.guardMs;
    for (;;) {
      const now = Date.now();
      let until = 0;
      for (const candidate of candidates) {
        for (const span of boundaries(candidate, this.target.clock)) {
          if (now >= span.lo - guard && now <= span.hi + guard) until = Math.max(until, span.hi + guard + 1);
        }
      }
      if (until === 0) return;
      this.stats.sleptMs += until - now;
      await sleep(until - now);
    }
  }

  private operation(
    step: Exclude<Step, { kind: 'sleep' }>,
    key: SequenceModel['keys'][number],
    real: SequenceReal,
  ): ModelOperation {
    const resolve = (ref: TokenRef): string => {
      const pick = (list: string[], fromEnd: number) => list[list.length - fromEnd];
      switch (ref) {
        case 'holder':
          return pick(key.granted, 1) ?? 'never-issued';
        case 'stale':
          return pick(key.granted, 2) ?? pick(key.refused, 1) ?? 'never-issued';
        case 'refused':
          return pick(key.refused, 1) ?? 'never-issued';
        case 'unknown':
          return 'never-issued';
      }
    };
    switch (step.kind) {
      case 'claim': {
        const claim: Claim = {
          fingerprint: FINGERPRINTS[step.fingerprint]!,
          token: real.nextToken(),
          leaseMs: step.leaseMs,
          ttlMs: step.ttlMs,
        };
        return { type: 'claim', claim };
      }
      case 'complete':
        return { type: 'complete', token: resolve(step.token), response: step.response, ttlMs: step.ttlMs };
      case 'release':
        return { type: 'release', token: resolve(step.token), ttlMs: step.ttlMs };
      case 'extend':
        return { type: 'extend', token: resolve(step.token), leaseMs: step.leaseMs };
      case 'get':
        return { type: 'get' };
      case 'delete':
        return { type: 'delete' };
    }
  }

  toString(): string {
    const { step } = this;
    switch (step.kind) {
      case 'sleep':
        return `sleep(${step.ms})`;
      case 'claim':
        return `claim(k${step.key}, ${FINGERPRINTS[step.fingerprint]}, lease ${step.leaseMs}, ttl ${step.ttlMs})`;
      case 'complete':
        return `complete(k${step.key}, ${step.token}, status ${step.response.status}, ${step.response.omitted ?? `${step.response.body.length} B`}, ttl ${step.ttlMs})`;
      case 'release':
        return `release(k${step.key}, ${step.token}, ttl ${step.ttlMs})`;
      case 'extend':
        return `extend(k${step.key}, ${step.token}, lease ${step.leaseMs})`;
      case 'get':
      case 'delete':
        return `${step.kind}(k${step.key})`;
    }
  }
}

async function perform(store: Store, key: string, operation: ModelOperation): Promise<Observation> {
  switch (operation.type) {
    case 'claim': {
      const result = await store.acquire(key, operation.claim);
      return result.acquired
        ? { kind: 'acquire', acquired: true }
        : { kind: 'acquire', acquired: false, record: result.record };
    }
    case 'complete':
      return {
        kind: 'write',
        ok: await store.complete(key, operation.token, operation.response, operation.ttlMs),
      };
    case 'release':
      return { kind: 'write', ok: await store.release(key, operation.token, operation.ttlMs) };
    case 'extend':
      return { kind: 'write', ok: await store.extend(key, operation.token, operation.leaseMs) };
    case 'get':
      return { kind: 'get', record: await store.get(key) };
    case 'delete':
      await store.delete(key);
      return { kind: 'delete' };
  }
}
