import { defineProject } from 'vitest/config';

// The engine's tests run on the memory store. @idem/memory depends on core, so core cannot list it as a
// devDependency (a workspace cycle); its tests resolve it from source instead.
export default defineProject({
  test: { name: 'core' },
  resolve: { alias: { '@idem/memory': new URL('../memory/src/index.ts', import.meta.url).pathname } },
});
