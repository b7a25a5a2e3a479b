import { parseArgs } from 'node:util';
import { type RunningDemo, startDemo } from './app.js';
import { PAYLOADS, type Payload, runStorm } from './burst.js';
import { FRAMEWORK_NAMES } from './frameworks/server.js';
import {
  frameworkOption,
  integerOption,
  storeOption,
  UsageError,
  usageProblem,
  withoutSeparator,
} from './options.js';
import { STORE_NAMES } from './stores.js';
import { formatStorm } from './storm-report.js';

const USAGE = `Usage: pnpm demo:storm [-- options]      (tsx src/storm.ts [options] in apps/demo)

Fires K keys x (N concurrent requests + M sequential retries) of POST /orders, then reads back how many
orders each key created. Exactly one per key is idem doing its job; the exit code is 1 otherwise.

Target (one of):
  --url <url>          a running demo; repeat it (or comma-separate) to spread every key's requests
                       over several demo processes
  --framework <name>   start a demo in this process: ${FRAMEWORK_NAMES.join(' | ')} (default hono)
  --store <name>       ... on ${STORE_NAMES.join(' | ')} (default memory; URLs from IDEM_* env)

Load:
  --keys <K>           keys (default 10)
  --concurrency <N>    concurrent requests per key (default 10)
  --retries <M>        sequential retries per key after its burst (default 2)
  --payload <kind>     ${PAYLOADS.join(' | ')} (default normal; slow takes 2 s, error fails the first run)
  --json               print the result as JSON instead of a table
  -h, --help`;

interface StormCliOptions {
  help: boolean;
  urls: string[];
  framework: ReturnType<typeof frameworkOption>;
  store: ReturnType<typeof storeOption>;
  keys: number;
  concurrency: number;
  retries: number;
  payload: Payload;
  json: boolean;
}

function parseStormArgs(argv: readonly string[]): StormCliOptions {
  const { values } = parseArgs({
    args: withoutSeparator(argv),
    options: {
      url: { type: 'string', multiple: true },
      framework: { type: 'string' },
      store: { type: 'string' },
      keys: { type: 'string' },
      concurrency: { type: 'string' },
      retries: { type: 'string' },
      payload: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  const urls = (values.url ?? []).flatMap((url) => url.split(',')).filter((url) => url !== '');
  for (const url of urls) {
    if (!/^https?:\/\/[^/]+/.test(url)) throw new UsageError(`--url ${url} is not an http(s) URL`);
  }
  if (urls.length > 0 && (values.framework !== undefined || values.store !== undefined)) {
    throw new UsageError('give either --url (a running demo) or --framework/--store (start one), not both');
  }
  const payload = values.payload ?? 'normal';
  if (!(PAYLOADS as readonly string[]).includes(payload)) {
    throw new UsageError(`unknown payload "${payload}": use one of ${PAYLOADS.join(', ')}`);
  }
  return {
    help: values.help ?? false,
    urls,
    framework: frameworkOption(values.framework ?? 'hono'),
    store: storeOption(values.store ?? 'memory'),
    keys: integerOption('keys', values.keys ?? '10', 1, 10_000),
    concurrency: integerOption('concurrency', values.concurrency ?? '10', 1, 1_000),
    retries: integerOption('retries', values.retries ?? '2', 0, 1_000),
    payload: payload as Payload,
    json: values.json ?? false,
  };
}

async function main(): Promise<void> {
  // On Node 20 the AWS SDK warns about its future releases: noise in a first run's output.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  let options: StormCliOptions;
  try {
    options = parseStormArgs(process.argv.slice(2));
  } catch (error) {
    const problem = usageProblem(error);
    if (problem === undefined) throw error;
    console.error(`storm: ${problem}\n\n${USAGE}`);
    process.exit(2);
  }
  if (options.help) {
    console.log(USAGE);
    return;
  }
  let demo: RunningDemo | undefined;
  if (options.urls.length === 0) {
    try {
      demo = await startDemo({ framework: options.framework, store: options.store, port: 0 });
    } catch (error) {
      console.error(`storm: could not start a demo: ${error instanceof Error ? error.message : error}`);
      process.exit(1);
    }
    if (!options.json)
      console.log(`storm: started ${options.framework} on ${options.store} at ${demo.url}\n`);
  }
  try {
    const result = await runStorm({
      urls: demo ? [demo.url] : options.urls,
      keys: options.keys,
      concurrency: options.concurrency,
      retries: options.retries,
      payload: options.payload,
    });
    console.log(options.json ? JSON.stringify(result, null, 2) : formatStorm(result));
    process.exitCode = result.ok ? 0 : 1;
  } catch (error) {
    console.error(`storm: ${error instanceof Error ? error.message : error}`);
    process.exitCode = 1;
  } finally {
    await demo?.close();
  }
}

await main();
