/**
 * The torture server: one real process serving `POST /work/<profile>` over the configured framework and
 * store, journaling every handler run and every engine event to files shared by all processes of a
 * test. Started by the fault tests as `node --import tsx src/server/main.ts` with the configuration as
 * JSON in `IDEM_TORTURE_SERVER` (see `config.ts`); prints `{"ready":true,"port":N,"pid":P}` when it listens.
 *
 * It exits when its stdin closes, so that a test runner that dies (or is killed) never leaves servers
 * behind.
 */
import { isIdempotencyError } from '@idem/core';
import { startApp } from './app.js';
import { readConfig } from './config.js';
import { appendLine } from './journal.js';
import { openStore } from './stores.js';

const config = readConfig(process.env);
let clientErrors = 0;
const { store, faults, close } = await openStore(config.store, () => {
  clientErrors++;
});

const app = await startApp(config.framework, {
  server: config.name,
  store,
  profiles: config.profiles,
  runsFile: config.runsFile,
  gateDir: config.gateDir,
  setFaults: faults ? (next) => faults.set(next) : null,
  onEvent: (event) => {
    const error = event.error;
    appendLine(config.eventsFile, {
      type: event.type,
      server: config.name,
      pid: process.pid,
      key: event.key,
      ...(event.operation !== undefined && { operation: event.operation }),
      ...(event.failOpen !== undefined && { failOpen: event.failOpen }),
      ...(error !== undefined && {
        error: isIdempotencyError(error)
          ? `${error.code}: ${error.message}`
          : error instanceof Error
            ? error.message
            : String(error),
      }),
      at: Date.now(),
    });
  },
});

process.stdout.write(`${JSON.stringify({ ready: true, port: app.port, pid: process.pid })}\n`);

const shutdown = async () => {
  await app.close().catch(() => {});
  await close().catch(() => {});
  process.stderr.write(`[torture] ${config.name}: ${clientErrors} store client errors\n`);
  process.exit(0);
};
process.stdin.on('data', () => {});
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => void shutdown());
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`[torture] ${config.name}: unhandled rejection: ${String(reason)}\n`);
});
