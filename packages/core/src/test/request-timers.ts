import { AsyncLocalStorage } from 'node:async_hooks';
import { vi } from 'vitest';

/**
 * Timers as Cloudflare Workers has them, for tests: numeric ids (no `unref`), each owned by the request
 * that set it (a timer set in a timer's callback belongs to the same request), and all of a request's
 * timers dropped when it ends. Replaces the global `setTimeout` and `clearTimeout` until `restore()`.
 */
export function requestScopedTimers() {
  const requests = new AsyncLocalStorage<string>();
  const owned = new Map<string, number[]>();
  const handles = new Map<number, ReturnType<typeof setTimeout>>();
  const real = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout };
  let nextId = 1;
  vi.stubGlobal('setTimeout', (callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const id = nextId++;
    handles.set(
      id,
      real.setTimeout(() => {
        handles.delete(id);
        callback(...args);
      }, ms),
    );
    const owner = requests.getStore();
    if (owner !== undefined) owned.set(owner, [...(owned.get(owner) ?? []), id]);
    return id;
  });
  vi.stubGlobal('clearTimeout', (id: number) => {
    real.clearTimeout(handles.get(id));
    handles.delete(id);
  });
  return {
    /** Run `fn` as request `name`: the timers it sets are that request's. */
    run: <T>(name: string, fn: () => T): T => requests.run(name, fn),
    /** Request `name` ended: drop its timers. */
    end(name: string): void {
      for (const id of owned.get(name) ?? []) globalThis.clearTimeout(id);
    },
    restore: () => vi.unstubAllGlobals(),
  };
}
