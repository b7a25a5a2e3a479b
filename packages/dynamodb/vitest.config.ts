import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'dynamodb',
    // One DynamoDB Local for the whole run (a JVM takes seconds to start), not one per test file.
    globalSetup: ['./vitest.global-setup.ts'],
    setupFiles: ['./vitest.setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 90_000,
  },
});
