import { createRequire } from 'node:module';
import { defineProject } from 'vitest/config';

// The package's whole suite again on ioredis 6, the peer range's other major (RESP3 by default): every
// `ioredis` import, the store's, the tests' and the test services', resolves to it. The root config
// lists this file next to the package's own vitest.config.ts.
export default defineProject({
  test: { name: 'redis on ioredis 6', env: { IDEM_IOREDIS_MAJOR: '6' } },
  resolve: { alias: { ioredis: createRequire(import.meta.url).resolve('ioredis6') } },
});
