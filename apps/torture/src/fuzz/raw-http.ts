import { connect } from 'node:net';

/** A request written byte for byte: whatever `fetch` would refuse to send (control characters, raw bytes). */
export interface RawRequest {
  method: string;
  /** Request target, sent as is. */
  path: string;
  /** Header lines in order, repeats kept; a value may be raw bytes. */
  headers: ReadonlyArray<readonly [string, string | Uint8Array]>;
  body: Uint8Array;
  /** Send the body chunked (`Transfer-Encoding: chunked`, in a few chunks) instead of with a `Content-Length`. */
  chunked?: boolean;
}

/** A response as it came over the wire. */
export interface RawResponse {
  status: number;
  /** Header names lower-cased, in order. */
  headers: Array<[string, string]>;
  body: Buffer;
}

/** The connection ended without a complete response, or none came in time. */
export class NoResponseError extends Error {
  override readonly name = 'NoResponseError';
}

/** The bytes of `request` (with `Host` and `Connection: close`), as a client would put them on the wire. */
export function encodeRequest(request: RawRequest): Buffer {
  const parts: Buffer[] = [
    Buffer.from(
      `${request.method} ${request.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`,
      'latin1',
    ),
  ];
  for (const [name, value] of request.headers) {
    parts.push(
      Buffer.from(`${name}: `, 'latin1'),
      typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.from(value),
      Buffer.from('\r\n'),
    );
  }
  if (request.chunked) {
    parts.push(Buffer.from('Transfer-Encoding: chunked\r\n\r\n'));
    const size = Math.max(1, Math.ceil(request.body.length / 3));
    for (let offset = 0; offset < request.body.length; offset += size) {
      const chunk = request.body.subarray(offset, offset + size);
      parts.push(Buffer.from(`${chunk.length.toString(16)}\r\n`), Buffer.from(chunk), Buffer.from('\r\n'));
    }
    parts.push(Buffer.from('0\r\n\r\n'));
  } else {
    parts.push(Buffer.from(`Content-Length: ${request.body.length}\r\n\r\n`), Buffer.from(request.body));
  }
  return Buffer.concat(parts);
}

/**
 * Write `request` on a fresh TCP connection to `127.0.0.1:port` and read the response until the server
 * closes the connection. Rejects with {@link NoResponseError} when no complete response arrives within
 * `timeoutMs` or the connection ends without one.
 */
export function sendRaw(
  port: number,
  request: RawRequest | Buffer,
  timeoutMs = 10_000,
): Promise<RawResponse> {
  const bytes = Buffer.isBuffer(request) ? request : encodeRequest(request);
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const received = Buffer.concat(chunks);
      const response = parseResponse(received, true);
      if (response) resolve(response);
      else
        reject(
          error ??
            new NoResponseError(
              `no complete response (${received.length} bytes received: ${JSON.stringify(received.subarray(0, 200).toString('latin1'))})`,
            ),
        );
    };
    const timer = setTimeout(
      () => finish(new NoResponseError(`no response within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      // A server may answer early (a 413 or 431) and keep the connection open while the rest arrives.
      if (parseResponse(Buffer.concat(chunks))) finish();
    });
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    // Writing after an early answer can fail (EPIPE, ECONNRESET): the answer already read still counts.
    socket.on('error', () => finish());
    socket.write(bytes);
  });
}

/**
 * A complete HTTP/1.1 response at the start of `bytes`, or null while it is incomplete. `closed`: the
 * connection has ended, so a response without framing ends here.
 */
export function parseResponse(bytes: Buffer, closed = false): RawResponse | null {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!status) return null;
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    headers.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
  }
  const header = (name: string) => headers.find(([key]) => key === name)?.[1];
  const rest = bytes.subarray(end + 4);
  const code = Number(status[1]);
  if (code === 204 || code === 304 || code < 200) return { status: code, headers, body: Buffer.alloc(0) };
  if (header('transfer-encoding')?.toLowerCase() === 'chunked') {
    const body = dechunk(rest);
    return body === null ? null : { status: code, headers, body };
  }
  const length = header('content-length');
  if (length !== undefined) {
    const n = Number(length);
    return rest.length < n ? null : { status: code, headers, body: rest.subarray(0, n) };
  }
  // No framing: the body runs until the connection closes.
  return closed ? { status: code, headers, body: rest } : null;
}

function dechunk(bytes: Buffer): Buffer | null {
  const out: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', offset);
    if (lineEnd < 0) return null;
    const size = Number.parseInt(bytes.subarray(offset, lineEnd).toString('latin1'), 16);
    if (Number.isNaN(size)) return null;
    if (size === 0) return Buffer.concat(out);
    const start = lineEnd + 2;
    if (bytes.length < start + size + 2) return null;
    out.push(bytes.subarray(start, start + size));
    offset = start + size + 2;
  }
}
