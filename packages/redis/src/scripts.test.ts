import { describe, expect, it } from 'vitest';
import { SCRIPTS } from './scripts.js';

// Cluster routes a script by its declared keys; a script touching any other key breaks there (or,
// worse, works by luck when both keys share a node). These checks read the sources; cluster.test.ts
// runs them on a real cluster.
describe.each(Object.entries(SCRIPTS))('script %s', (_name, script) => {
  const calls = [...script.lua.matchAll(/redis\.p?call\(([^)]*)\)/g)].map((match) =>
    match[1]!.split(',').map((arg) => arg.trim()),
  );

  it('declares exactly one key and reads KEYS[1] only, once, as `key`', () => {
    expect(script.numberOfKeys).toBe(1);
    expect([...script.lua.matchAll(/KEYS\[[^\]]*\]/g)].map(([text]) => text)).toEqual(['KEYS[1]']);
    expect(script.lua).toMatch(/^local key = KEYS\[1\]$/m);
  });

  it('passes `key` as the key of every Redis command it calls (TIME takes none)', () => {
    expect(calls.length).toBeGreaterThan(2);
    for (const [command, firstArgument, ...rest] of calls) {
      expect(command, 'a literal command name').toMatch(/^'[A-Z]+'$/);
      if (command === "'TIME'") {
        expect(firstArgument).toBeUndefined();
        continue;
      }
      expect(firstArgument, `${command} ${firstArgument} ${rest.join(' ')}`).toBe('key');
    }
  });

  it('calls only single-key commands', () => {
    const singleKey = new Set(["'TIME'", "'TYPE'", "'HMGET'", "'HGETALL'", "'HSET'", "'DEL'", "'PEXPIREAT'"]);
    for (const [command] of calls) expect(singleKey.has(command!), command).toBe(true);
  });
});
