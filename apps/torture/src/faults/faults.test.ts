import { faultSuite } from './suite.js';

// Storms, crashes, outages and latency against every store, through real server processes. One file,
// so that the four stores run side by side (see suite.ts); pick one with `-t <store>`.
for (const kind of ['memory', 'redis', 'postgres', 'dynamodb'] as const) faultSuite(kind);
