/** The content encodings a stored body may have. */
export type BodyEncoding = 'gzip';

interface ZlibLike {
  gzip(input: Uint8Array, callback: (error: Error | null, result: Uint8Array) => void): void;
  gunzip(input: Uint8Array, callback: (error: Error | null, result: Uint8Array) => void): void;
}

let zlib: ZlibLike | null | undefined;

/**
 * node:zlib when the runtime has it (Node, Bun, Deno): reached through `process.getBuiltinModule`,
 * so no `node:` import reaches bundlers for Workers or browsers, which use CompressionStream instead.
 * zlib is preferred because CompressionStream costs about half a millisecond more per call.
 */
function nodeZlib(): ZlibLike | null {
  if (zlib === undefined) {
    const runtime = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
    zlib = (runtime?.getBuiltinModule?.('node:zlib') as ZlibLike | undefined) ?? null;
  }
  return zlib;
}

/** Whether this runtime can gzip at all. */
export function canCompress(): boolean {
  return nodeZlib() !== null || typeof CompressionStream === 'function';
}

/** Gzip `bytes`. Callers check {@link canCompress} first. */
export function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const node = nodeZlib();
  if (node) return viaZlib(node.gzip.bind(node), bytes);
  return viaStream(bytes, new CompressionStream('gzip'));
}

/** Gunzip `bytes`; rejects when they are not a complete, intact gzip stream (gzip carries a CRC). */
export function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const node = nodeZlib();
  if (node) return viaZlib(node.gunzip.bind(node), bytes);
  if (typeof DecompressionStream !== 'function') {
    return Promise.reject(
      new Error('[idem] [dynamodb] this runtime has neither node:zlib nor DecompressionStream'),
    );
  }
  return viaStream(bytes, new DecompressionStream('gzip'));
}

function viaZlib(
  run: (input: Uint8Array, callback: (error: Error | null, result: Uint8Array) => void) => void,
  bytes: Uint8Array,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) =>
    run(bytes, (error, result) =>
      // A plain Uint8Array view, not a Buffer: callers compare and replay exact Uint8Arrays.
      error ? reject(error) : resolve(new Uint8Array(result.buffer, result.byteOffset, result.byteLength)),
    ),
  );
}

async function viaStream(bytes: Uint8Array, transform: CompressionStream | DecompressionStream) {
  const source = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream();
  return new Uint8Array(await new Response(source.pipeThrough(transform)).arrayBuffer());
}
