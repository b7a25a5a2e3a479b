import { appendFileSync, closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * The journals every torture server process appends to and tests read: one JSON object per line, one
 * `appendFileSync` (a single `O_APPEND` write) per line, so lines of concurrent processes never mix and
 * a line written before a `kill -9` is on disk. Counting executions here works for every store and
 * never goes through the proxy that the tests break.
 */

/** A handler run: `start` is written before the handler does anything, `end` after it worked. */
export interface RunLine {
  phase: 'start' | 'end';
  /** Unique per execution; the response body carries it, so a replay names the execution it replays. */
  run: string;
  server: string;
  pid: number;
  /** The client's `Idempotency-Key`. */
  key: string;
  storageKey: string;
  /** Whether the run holds a claim (`false` only when fail-open ran it without one). */
  claimed: boolean;
  /** Whether the handler's lease was lost while it worked (its `AbortSignal` fired). */
  aborted?: boolean;
  at: number;
}

/** An engine event (`onEvent`), with the error reduced to its code and message. */
export interface EventLine {
  type: string;
  server: string;
  pid: number;
  /** The storage key. */
  key: string;
  operation?: string;
  failOpen?: boolean;
  error?: string;
  at: number;
}

/** Append one line to a journal. */
export function appendLine(file: string, line: RunLine | EventLine): void {
  appendFileSync(file, `${JSON.stringify(line)}\n`);
}

/**
 * A journal read as it grows: each `lines()` call reads only the bytes appended since the last one (a
 * test polls journals every few ms while thousands of lines accumulate). A line still being written
 * (no newline yet) waits for the next call.
 */
export class JournalReader<T extends RunLine | EventLine> {
  private offset = 0;
  private partial = '';
  private readonly parsed: T[] = [];

  constructor(private readonly file: string) {}

  /** Every complete line so far (a missing file is an empty journal). The array is the reader's own. */
  lines(): readonly T[] {
    if (!existsSync(this.file)) return this.parsed;
    const fd = openSync(this.file, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size > this.offset) {
        const buffer = Buffer.alloc(size - this.offset);
        const read = readSync(fd, buffer, 0, buffer.length, this.offset);
        this.offset += read;
        const text = this.partial + buffer.toString('utf8', 0, read);
        const complete = text.lastIndexOf('\n');
        this.partial = text.slice(complete + 1);
        for (const line of text.slice(0, complete + 1).split('\n')) {
          if (line.length > 0) this.parsed.push(JSON.parse(line) as T);
        }
      }
    } finally {
      closeSync(fd);
    }
    return this.parsed;
  }
}
