/**
 * The dashboard at `GET /` of `--http` (docs/http.md#dashboard): one HTML page with its CSS and
 * script inline, embedded in the binary as text (no CDN, nothing built at run time). It polls the
 * JSON API from the browser; the broker does no work for it beyond serving these bytes.
 */
import { createHash } from "node:crypto";
// Bun's types call any .html import an HTMLBundle; `type: "text"` makes it the file's text.
import pageText from "./dashboard.html" with { type: "text" };

const page = pageText as unknown as string;

/** `'sha256-…'` of the text of every `<tag>` element of the page, for its Content-Security-Policy. */
function inlineHashes(tag: "script" | "style"): string {
  const hashes: string[] = [];
  for (const m of page.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))) hashes.push(`'sha256-${createHash("sha256").update(m[1]!).digest("base64")}'`);
  return hashes.join(" ");
}

/**
 * Only the page's own inline script and style run, and it may only fetch from this origin: should
 * a value ever reach the DOM as markup, an injected script or handler still would not run.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${inlineHashes("script")}`,
  `style-src ${inlineHashes("style")}`,
  "connect-src 'self'",
  "img-src data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const headers = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy": DASHBOARD_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** The answer to `GET /`. */
export function dashboardResponse(): Response {
  return new Response(page, { headers });
}
