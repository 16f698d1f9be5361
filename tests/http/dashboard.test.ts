/**
 * The dashboard at `GET /` (docs/http.md#dashboard). The page itself, served here by
 * dashboardResponse() with API answers no broker would give (markup in every string field: the
 * broker's name rules keep it out of real topic names, the page must not rely on that); then the
 * real thing: `mq up --http` from the compiled binary, a known workload, the page in headless
 * Chromium, a live update, the topic's view, and the server going away and coming back.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { DASHBOARD_CSP, dashboardResponse } from "../../lib/http/dashboard.ts";
import { tmpDir } from "../e2e/harness.ts";
import { noBrowser, openBrowser } from "./browser.ts";

describe("dashboardResponse", () => {
  test("is one HTML page with no outside resource, not cached", async () => {
    const res = dashboardResponse();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const html = await res.text();
    expect(html).toStartWith("<!doctype html>");
    // No CDN and no second request: no src= / href= to anything but the page's own hash routes and the empty icon.
    expect(html).not.toMatch(/\bsrc\s*=/);
    for (const m of html.matchAll(/\bhref="([^"]*)"/g)) expect(m[1]).toMatch(/^(#|data:,$)/);
  });

  test("its Content-Security-Policy lets only the page's own inline script and style run, and fetch only from its origin", async () => {
    const res = dashboardResponse();
    const html = await res.text();
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toBe(DASHBOARD_CSP);
    const sha = (s: string) => `'sha256-${createHash("sha256").update(s).digest("base64")}'`;
    expect(csp).toContain(`script-src ${sha(html.match(/<script>([\s\S]*?)<\/script>/)![1]!)};`);
    expect(csp).toContain(`style-src ${sha(html.match(/<style>([\s\S]*?)<\/style>/)![1]!)};`);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
  });
});

/** Removes all but the screenshots from a test's temp dir (they are there to be looked at). */
function keepOnlyScreenshots(dir: string): void {
  for (const name of fs.readdirSync(dir)) if (!name.endsWith(".png")) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  console.log(`screenshots in ${dir}`);
}

/** Strings that would be markup if the page ever used innerHTML with data. */
const hostile = {
  topic: `<img src=x onerror="window.__injected=1">orders`,
  group: `"><script>window.__injected=2</script>`,
  broker: `<b id="injected">host</b>`,
};

/** A stand-in for a broker's API (real topic names cannot hold markup): every string field hostile. */
function hostileApi() {
  const topic = { name: hostile.topic, messages: 3, headSeq: 3, firstSeq: 1, subscribers: 1, bytes: 2048, publishedTotal: 3, rate: 0.5 };
  const consumer = { id: 7, group: hostile.group, filter: hostile.topic, ackedSeq: 1, backlog: 2 };
  const json = (body: unknown) => Response.json(body);
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const url = new URL(req.url);
      if (url.pathname === "/") return dashboardResponse();
      if (url.pathname === "/healthz") return json({ status: "ok", note: hostile.broker });
      if (url.pathname === "/api/topics") return json({ topics: [topic] });
      if (url.pathname === `/api/topics/${encodeURIComponent(hostile.topic)}`) return json({ ...topic, consumers: [{ ...consumer, pending: 1 }] });
      if (url.pathname === "/api/consumers") return json({ consumers: [{ ...consumer, topic: hostile.topic, broker: hostile.broker }] });
      if (url.pathname === "/api/brokers") return json({ brokers: [{ name: hostile.broker, address: hostile.broker, connectedAt: Date.now() - 65_000, ids: 1, inFlight: 0 }] });
      return new Response("not found", { status: 404 });
    },
  });
}

describe("the page in headless Chromium", () => {
  test.skipIf(Boolean(noBrowser))(`shows every value from the API as text, never as markup${noBrowser}`, async () => {
    const dir = tmpDir("mq-dashboard-");
    const api = hostileApi();
    try {
      await using chromium = await openBrowser(dir);
      const { page } = chromium;
      await page.goto(`http://127.0.0.1:${api.port}/`);
      const row = `#topics tr[data-topic=${JSON.stringify(hostile.topic)}]`; // a JSON string is a CSS string
      await page.waitForSelector(row);
      expect(await page.$eval(`${row} [data-col=name]`, (e) => e.textContent)).toBe(hostile.topic);
      expect(await page.$eval(`${row} [data-col=backlog]`, (e) => e.textContent)).toBe("2");
      expect(await page.$eval(`#consumers tr[data-consumer="7"] [data-col=group]`, (e) => e.textContent)).toBe(hostile.group);
      expect(await page.$eval(`#brokers [data-col=name]`, (e) => e.textContent)).toBe(hostile.broker);
      expect(await page.$eval(`#health [data-field=note]`, (e) => e.textContent)).toBe(hostile.broker);

      await page.screenshot({ path: path.join(dir, "overview-hostile.png") });

      // The topic's link leads to its view, name and consumers still text.
      await page.click(`${row} a`);
      await page.waitForSelector(`#topic-consumers tr[data-consumer="7"]`);
      expect(await page.$eval("#topic-name", (e) => e.textContent)).toBe(hostile.topic);
      expect(await page.$eval(`#topic-consumers [data-col=filter]`, (e) => e.textContent)).toBe(hostile.topic);

      // (Expressions as strings: the tests are typed without the DOM library.)
      expect(await page.evaluate(`document.querySelectorAll("main img, main script, #injected").length`)).toBe(0);
      expect(await page.evaluate(`typeof window.__injected`)).toBe("undefined");
      await page.screenshot({ path: path.join(dir, "topic-hostile.png") });
    } finally {
      await api.stop(true);
      keepOnlyScreenshots(dir);
    }
  }, 60_000);
});
