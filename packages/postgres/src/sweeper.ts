/** Options of `store.sweep()`. */
export interface SweepOptions {
  /** Most rows one call deletes (one short statement). Default 1000. */
  limit?: number | undefined;
}

/** Options of `store.startSweeper()`. */
export interface SweeperOptions {
  /** Time between two sweeps, in ms. Default 60 s. */
  intervalMs?: number | undefined;
  /** Rows per batch (one statement each). Default 1000. */
  limit?: number | undefined;
  /**
   * Batches per sweep at most: a sweep goes on while batches come back full, up to this many, so one
   * run never holds the database busy for long. Default 10.
   */
  maxBatches?: number | undefined;
  /** Called with the number of rows each sweep deleted (0 included). */
  onSweep?: ((deleted: number) => void) | undefined;
  /** Called when a sweep fails; the sweeper keeps running. Default: ignore. */
  onError?: ((error: unknown) => void) | undefined;
}

/** A running sweeper. Its timer is unref'd: it never keeps the process alive on its own. */
export interface Sweeper {
  /** Stop sweeping; resolves once a sweep that is running has finished. Calling it again is fine. */
  stop(): Promise<void>;
}

/** Defaults of the sweep options. */
export const SWEEP_DEFAULTS = { limit: 1000, intervalMs: 60_000, maxBatches: 10 } as const;

/** Check a positive integer option. */
export function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TypeError(`[idem] [postgres] ${name} must be a positive integer`);
  }
  return value;
}

/**
 * Run `sweepBatch` every `intervalMs` (the next run is planned when the previous one ends, so runs
 * never overlap), repeating full batches up to `maxBatches` per run.
 */
export function startSweeper(
  sweepBatch: (limit: number) => Promise<number>,
  options: SweeperOptions = {},
): Sweeper {
  const intervalMs = positiveInteger('intervalMs', options.intervalMs ?? SWEEP_DEFAULTS.intervalMs);
  const limit = positiveInteger('limit', options.limit ?? SWEEP_DEFAULTS.limit);
  const maxBatches = positiveInteger('maxBatches', options.maxBatches ?? SWEEP_DEFAULTS.maxBatches);
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> = Promise.resolve();

  const sweepOnce = async (): Promise<void> => {
    let total = 0;
    try {
      for (let batch = 0; batch < maxBatches && !stopped; batch++) {
        const deleted = await sweepBatch(limit);
        total += deleted;
        if (deleted < limit) break;
      }
      options.onSweep?.(total);
    } catch (error) {
      try {
        options.onError?.(error);
      } catch {
        // a failing observer must not stop the sweeper
      }
    }
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = sweepOnce().finally(schedule);
    }, intervalMs);
    timer.unref?.();
  };
  schedule();

  return {
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
