import { defineConfig } from 'vitest/config';

// IDEM_TEST_REPORT=<file> adds a JSON report of the run (.ci/run builds its summary line from it).
const report = process.env['IDEM_TEST_REPORT'];

export default defineConfig({
  test: {
    projects: ['packages/*', 'packages/redis/vitest.ioredis6.config.ts', 'apps/*'],
    reporters: report ? ['default', ['json', { outputFile: report }]] : ['default'],
  },
});
