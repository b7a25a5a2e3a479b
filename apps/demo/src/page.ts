import { readFile } from 'node:fs/promises';
import type { Reply } from './orders.js';

/** What the page shows about the server it talks to. */
export interface PageInfo {
  framework: string;
  store: string;
  location: string;
}

/**
 * `GET /`: the demo page (`page.html`, plain HTML and inline JS, no build step) with `info` filled in.
 * It is served without an Idempotency-Key check: only `POST /orders` is covered.
 */
export async function pageReply(info: PageInfo): Promise<Reply> {
  const html = await readFile(new URL('./page.html', import.meta.url), 'utf8');
  // `<` escaped so that no value can close the script element.
  const data = JSON.stringify(info).replaceAll('<', '\\u003c');
  return {
    status: 200,
    headers: [
      ['content-type', 'text/html; charset=utf-8'],
      ['cache-control', 'no-store'],
    ],
    body: html.replace('/*DEMO_INFO*/ null', data),
  };
}
