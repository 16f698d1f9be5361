/**
 * The dashboard at `GET /` (docs/http.md#dashboard). The page itself, served here by
 * dashboardResponse() with API answers no broker would give (markup in every string field: the
 * broker's name rules keep it out of real topic names, the page must not rely on that) and more
 * rows than it draws; then the real thing: `mq server --http` and `mq local --http` from the
 * compiled binary, a known workload, the page in headless Chromium, a live update, the topic's
 * view, the local broker's page, the server going away and coming back, and the token.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { DASHBOARD_CSP, dashboardResponse } from "../../lib/http/dashboard.ts";
import { createOn, mq, startLocal, startServer, teardown, tmpDir } from "../e2e/harness.ts";
import { noBrowser, openBrowser, waitForSelector, waitForText } from "./browser.ts";

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
  const topic = { name: hostile.topic, messages: 3, headSeq: 3, firstSeq: 1, subscribers: 1, bytes: 2048, publishedTotal: 3, rate: 0.5, backlog: 2 };
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
      await waitForSelector(page, row);
      expect(await page.$eval(`${row} [data-col=name]`, (e) => e.textContent)).toBe(hostile.topic);
      expect(await page.$eval(`${row} [data-col=backlog]`, (e) => e.textContent)).toBe("2");
      expect(await page.$eval(`#consumers tr[data-consumer="7"] [data-col=group]`, (e) => e.textContent)).toBe(hostile.group);
      expect(await page.$eval(`#brokers [data-col=name]`, (e) => e.textContent)).toBe(hostile.broker);
      expect(await page.$eval(`#health [data-field=note]`, (e) => e.textContent)).toBe(hostile.broker);

      await page.screenshot({ path: path.join(dir, "overview-hostile.png") });

      // The topic's link leads to its view, name and consumers still text.
      await page.click(`${row} a`);
      await waitForSelector(page, `#topic-consumers tr[data-consumer="7"]`);
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

  test.skipIf(Boolean(noBrowser))(`draws at most 500 rows per table and says how many more there are${noBrowser}`, async () => {
    const dir = tmpDir("mq-dashboard-");
    const topics = Array.from({ length: 505 }, (_, i) => ({ name: `t.${String(i).padStart(4, "0")}`, messages: 0, headSeq: 0, firstSeq: 1, subscribers: 0, bytes: 0, publishedTotal: 0, rate: 0, backlog: 0 }));
    const api = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req) {
        const p = new URL(req.url).pathname;
        if (p === "/") return dashboardResponse();
        if (p === "/healthz") return Response.json({ status: "ok", role: "server" });
        if (p === "/api/topics") return Response.json({ topics });
        if (p === "/api/consumers") return Response.json({ consumers: [] });
        if (p === "/api/brokers") return Response.json({ brokers: [] });
        return new Response("not found", { status: 404 });
      },
    });
    try {
      await using chromium = await openBrowser(dir);
      const { page } = chromium;
      await page.goto(`http://127.0.0.1:${api.port}/`);
      await waitForText(page, "#topics tr[data-more] td", "… 5 more not shown (the first 500 are)");
      expect(await page.$$eval("#topics tr[data-topic]", (rows) => rows.length)).toBe(500);
      expect(await page.$eval("#topics-count", (e) => e.textContent)).toBe("(505)");
      expect(await page.$$eval("#topics tr[data-topic] [data-col=name]", (cells) => cells.at(-1)?.textContent)).toBe("t.0499");
    } finally {
      await api.stop(true);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test.skipIf(Boolean(noBrowser))(`with every API request refused, names /api/topics whichever refusal arrives first${noBrowser}`, async () => {
    const dir = tmpDir("mq-dashboard-");
    // /api/topics is refused last: after the other two were, and a moment later (so that the
    // browser has their answers first, as on a loaded machine where they happened to be faster).
    let othersRefused = 0;
    const { promise: othersDone, resolve: othersDoneNow } = Promise.withResolvers<void>();
    const refuse = () => new Response(JSON.stringify({ error: "missing or wrong token" }), { status: 401 });
    const api = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const p = new URL(req.url).pathname;
        if (p === "/") return dashboardResponse();
        if (p === "/healthz") return Response.json({ status: "ok", role: "server" });
        if (p === "/api/consumers" || p === "/api/brokers") {
          if (++othersRefused >= 2) othersDoneNow();
          return refuse();
        }
        if (p === "/api/topics") {
          await othersDone;
          await Bun.sleep(300);
          return refuse();
        }
        return new Response("not found", { status: 404 });
      },
    });
    try {
      await using chromium = await openBrowser(dir);
      const { page } = chromium;
      await page.goto(`http://127.0.0.1:${api.port}/`);
      await waitForSelector(page, "#auth:not([hidden])");
      expect(await page.$eval("#banner", (e) => e.textContent)).toBe("not authorized: /api/topics answered HTTP 401; retrying every 1.5 s");
    } finally {
      await api.stop(true);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

/** A TCP port free right now (the server's --http must come back on the same one after a restart). */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** Waits (bounded) until `url` answers 200. */
async function waitForOk(url: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 300; i++) {
    const status = await fetch(url).then((r) => r.status, () => 0);
    if (status === 200) return;
    if (Date.now() > deadline) break;
    await Bun.sleep(50);
  }
  throw new Error(`${url} did not answer 200 in ${ms} ms`);
}

describe("mq server --http: the dashboard", () => {
  test.skipIf(Boolean(noBrowser))(`shows a topic, its backlog and its consumer, updates by itself, links to the topic's consumers, and says disconnected while the server is away; a local broker's page shows its ids and the server's absence${noBrowser}`, async () => {
    const dir = tmpDir("mq-dashboard-");
    const http = `127.0.0.1:${freePort()}`;
    const localHttp = `127.0.0.1:${freePort()}`;
    let server = await startServer({ args: ["--http", http] });
    const local = await startLocal(server.address, { args: ["--http", localHttp] });
    const daemons = () => [local.daemon, server.daemon];
    try {
      await waitForOk(`http://${http}/healthz`);
      const topic = "dash-board.orders_v2";
      const publisher = await createOn(local.socket);
      const consumer = await createOn(local.socket);
      // The consumer subscribes and never receives: all that is published stays its backlog.
      expect((await mq(local.socket, ["sub", String(consumer), topic])).code).toBe(0);
      for (let i = 1; i <= 3; i++) expect((await mq(local.socket, ["pub", String(publisher), topic, `m${i}`])).code).toBe(0);

      await using chromium = await openBrowser(dir);
      const { page } = chromium;
      await page.goto(`http://${http}/`);
      const row = `#topics tr[data-topic=${JSON.stringify(topic)}]`;
      await waitForText(page, `${row} [data-col=name]`, topic);
      await waitForText(page, `${row} [data-col=backlog]`, "3");
      await waitForText(page, `${row} [data-col=messages]`, "3");
      expect(await page.$eval(`${row} [data-col=rate]`, (e) => e.textContent)).toMatch(/\/s$/);
      const consumerRow = `#consumers tr[data-topic=${JSON.stringify(topic)}]`;
      await waitForText(page, `${consumerRow} [data-col=backlog]`, "3");
      expect(await page.$$eval("#brokers tr[data-broker]", (rows) => rows.length)).toBe(1);
      await page.screenshot({ path: path.join(dir, "overview.png") });

      // More published: the page shows it without a reload (the marker set in this document survives).
      await page.evaluate("window.__sameDocument = true");
      for (let i = 4; i <= 5; i++) expect((await mq(local.socket, ["pub", String(publisher), topic, `m${i}`])).code).toBe(0);
      await waitForText(page, `${row} [data-col=backlog]`, "5");
      await waitForText(page, `${consumerRow} [data-col=backlog]`, "5");
      expect(await page.evaluate("window.__sameDocument")).toBe(true);

      // The topic's link: its own view with its consumers.
      await page.click(`${row} [data-col=name] a`);
      await waitForText(page, "#topic-name", topic);
      await waitForText(page, "#topic-consumers tr[data-consumer] [data-col=backlog]", "5");
      expect(page.url()).toEndWith(`#/topics/${topic}`);
      await page.screenshot({ path: path.join(dir, "topic.png") });

      // The local broker's own page: its view, with the ids it holds.
      const localPage = await chromium.newPage();
      await localPage.goto(`http://${localHttp}/`);
      await waitForSelector(localPage, "#local-view:not([hidden])");
      await waitForText(localPage, `#local-ids tr[data-id="${consumer}"] [data-col=id]`, String(consumer));
      await waitForText(localPage, "#local-fields [data-field=server]", "connected");
      expect(await localPage.$eval("#overview", (e) => e.hasAttribute("hidden"))).toBe(true);

      // The server goes away: the page says so, keeps polling, and recovers when it is back.
      await server.daemon.stop();
      await waitForSelector(page, "body.disconnected");
      await waitForText(page, "#health-pill", "disconnected");
      await page.screenshot({ path: path.join(dir, "disconnected.png") });
      // The local broker is still up: its page says the server is unreachable (its /healthz: 503).
      await waitForText(localPage, "#health-pill", "unhealthy");
      await waitForText(localPage, "#local-fields [data-field=server]", "unreachable");
      await localPage.screenshot({ path: path.join(dir, "local-server-away.png") });
      server = await startServer({ dataDir: server.dataDir, port: server.port, args: ["--http", http] });
      await waitForSelector(page, "body:not(.disconnected)");
      await waitForText(page, "#topic-consumers tr[data-consumer] [data-col=backlog]", "5");
      await waitForText(page, "#health-pill", "healthy");
      await waitForText(localPage, "#health-pill", "healthy");

      // A topic that does not exist: said so, not an error page.
      await page.goto(`http://${http}/#/topics/no-such-topic`);
      await waitForText(page, "#topic-fields [data-field=error]", 'no topic "no-such-topic" on this server; GET /api/topics lists them');
    } finally {
      await teardown(daemons(), [local.dataDir, server.dataDir]);
      keepOnlyScreenshots(dir);
    }
  }, 120_000);
});

describe("mq server --http --http-token-file: the dashboard", () => {
  test.skipIf(Boolean(noBrowser))(`opens without the token, then asks for it; a wrong one is refused, the right one shows the topics${noBrowser}`, async () => {
    const dir = tmpDir("mq-dashboard-");
    const tokenFile = path.join(dir, "http-token");
    fs.writeFileSync(tokenFile, "s3cret-token\n", { mode: 0o600 });
    const http = `127.0.0.1:${freePort()}`;
    const server = await startServer({ args: ["--http", http, "--http-token-file", tokenFile] });
    try {
      await waitForOk(`http://${http}/healthz`);
      expect((await fetch(`http://${http}/api/topics`)).status).toBe(401);
      await using chromium = await openBrowser(dir);
      const { page } = chromium;
      await page.goto(`http://${http}/`);
      await waitForSelector(page, "#auth:not([hidden])");
      expect(await page.$eval("#banner", (e) => e.textContent)).toStartWith("not authorized: /api/topics answered HTTP 401");

      await page.type("#token", "wrong");
      await page.click("#auth-form button");
      await waitForText(page, "#banner", "not authorized: /api/topics answered HTTP 401; retrying every 1.5 s");
      expect(await page.$eval("#auth", (e) => e.hasAttribute("hidden"))).toBe(false);

      await page.type("#token", "s3cret-token");
      await page.click("#auth-form button");
      await waitForText(page, `#topics tr[data-topic="general"] [data-col=name]`, "general");
      await waitForSelector(page, "#auth[hidden]");
      expect(page.url()).not.toContain("s3cret");
      await page.screenshot({ path: path.join(dir, "with-token.png") });
    } finally {
      await teardown([server.daemon], [server.dataDir]);
      keepOnlyScreenshots(dir);
    }
  }, 120_000);
});
