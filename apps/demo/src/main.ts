import { type RunningDemo, startDemo } from './app.js';
import { DEMO_USAGE, parseDemoArgs, usageProblem } from './options.js';

/** The demo from the command line: `pnpm demo [-- --framework express --store redis --port 0]`. */
async function main(): Promise<void> {
  // On Node 20 the AWS SDK warns about its future releases: noise in a first run's output.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  let options: ReturnType<typeof parseDemoArgs>;
  try {
    options = parseDemoArgs(process.argv.slice(2), process.env);
  } catch (error) {
    const problem = usageProblem(error);
    if (problem === undefined) throw error;
    console.error(`demo: ${problem}\n\n${DEMO_USAGE}`);
    process.exit(2);
  }
  if (options.help) {
    console.log(DEMO_USAGE);
    return;
  }

  let demo: RunningDemo;
  try {
    demo = await startDemo(options);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const message =
      code === 'EADDRINUSE'
        ? `port ${options.port} is already in use: stop what runs there, or pass --port 0 (any free port) or another port`
        : error instanceof Error
          ? error.message.replace(/^\[demo\] /, '')
          : String(error);
    console.error(`demo: could not start: ${message}`);
    process.exit(1);
  }

  const key = `try-${Math.random().toString(36).slice(2, 8)}`;
  const { url, backend } = demo;
  console.log(`idem demo: the orders API on ${options.framework}, idempotency store: ${backend.name} (${backend.location})
  listening on ${url}

  Page   ${url}/   open it in a browser: fire bursts of requests with one key, see every outcome
  API    POST /orders (Idempotency-Key required)   GET /orders[?key=...]   GET /orders/:id

A replay: paste this; the second answer has Idempotent-Replayed: true, the same order and no Set-Cookie.

  for i in 1 2; do curl -si ${url}/orders -H 'Idempotency-Key: ${key}' -H 'Content-Type: application/json' -d '{"item":"coffee","quantity":2}'; echo; echo; done

A storm (many keys, concurrent requests, retries; exactly one execution per key):

  ${pnpmCommand()} demo:storm -- --url ${url}
${backend.shared ? '' : '\nThe memory store lives in this process only: for several processes, use --store redis or postgres.\n'}
Ctrl-C stops it.`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      console.error(`demo: ${signal} again, exiting without waiting`);
      process.exit(130);
    }
    stopping = true;
    console.log(`\ndemo: ${signal}: stopping (running requests finish first)`);
    demo.close().then(
      () => {
        console.log('demo: stopped');
        process.exit(0);
      },
      (error: unknown) => {
        console.error('demo: error while stopping:', error);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/**
 * pnpm as the user invoked it: the README's quick start runs it through npx, so a bare `pnpm` may not
 * be on their PATH; the same `npx -y pnpm@<version>` works either way.
 */
function pnpmCommand(): string {
  const version = /\bpnpm\/(\S+)/.exec(process.env['npm_config_user_agent'] ?? '')?.[1];
  return version ? `npx -y pnpm@${version}` : 'pnpm';
}

await main();
