/**
 * The HTTP endpoint of `mq server --http` and `mq local --http` (docs/http.md): probes
 * (/livez, /healthz), Prometheus /metrics and the JSON API, on Bun.serve. Off unless asked
 * for; the CLI refuses a non-loopback address without a token or TLS (docs/security.md).
 * Every answer is built when asked, from the daemon's own state: nothing here runs per message.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Server } from "bun";
import { DEFAULT_METRICS_MAX_TOPICS } from "../config.ts";
import { logger } from "../log.ts";
import type { LocalBroker } from "../local/local.ts";
import type { MqServer } from "../server/server.ts";
import { fsyncSeconds } from "../store/fsync-timing.ts";
import { localApi, problem, serverApi, type JsonAnswer } from "./api.ts";
import { dashboardResponse } from "./dashboard.ts";
import { localMetrics, serverMetrics, TopicCap } from "./prometheus.ts";
import { Rates } from "./rates.ts";

const log = logger("http");

export interface HttpOptions {
  hostname: string;
  port: number;
  /** Every request but the probes must carry `Authorization: Bearer <token>`. */
  token?: string;
  /** Serve HTTPS with this certificate (PEM). */
  tls?: { cert: string; key: string };
  /** Topics with series of their own in /metrics; the rest are summed under topic="_other". */
  metricsMaxTopics?: number;
}

export type HttpTarget = { server: MqServer; local?: undefined } | { local: LocalBroker; server?: undefined };

/** The paths each role serves, as the start line and a 404 name them (docs/http.md has them all). */
const PATHS = {
  server: "/ (the dashboard), /livez, /healthz, /metrics, /api/topics[/NAME], /api/consumers, /api/brokers, /api/server",
  local: "/ (the dashboard), /livez, /healthz, /metrics, /api/local",
} as const;

/**
 * A handler for requests: the routes of the daemon in `target`. Separate from the listener
 * so that the routes can be read in one place.
 */
function routes(target: HttpTarget, options: HttpOptions, rates: Rates): (path: string) => Response {
  const cap = new TopicCap(options.metricsMaxTopics ?? DEFAULT_METRICS_MAX_TOPICS);
  const role = target.server ? "server" : "local";
  return (path) => {
    if (path === "/") return dashboardResponse();
    if (path === "/livez") return json({ status: 200, body: { status: "ok", role } });
    if (path === "/healthz") return json(target.server ? serverHealth(target.server) : localHealth(target.local!));
    if (path === "/metrics") {
      const text = target.server ? serverMetrics(target.server.view(), cap, fsyncSeconds) : localMetrics(target.local!.localStats(), target.local!.latency);
      return new Response(text, { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
    }
    const answer = target.server
      ? serverApi(path, (topic) => target.server.view(topic), rates)
      : localApi(path, () => {
          const l = target.local!;
          return { stats: l.localStats(), connected: l.connected, serverAddress: l.serverAddr, ids: l.idBuffers() };
        });
    return json(answer ?? problem(404, `no such path ${JSON.stringify(path)}; this ${role === "server" ? "server" : "local broker"} serves ${PATHS[role]} (docs/http.md)`));
  };
}

function serverHealth(server: MqServer): JsonAnswer {
  if (!server.serving) return { status: 503, body: { status: "unavailable", role: "server", reason: "the server is stopping" } };
  const stats = server.stats();
  return { status: 200, body: { status: "ok", role: "server", uptimeSeconds: stats.uptime_s, topics: stats.topics, brokers: stats.sessions } };
}

/** Ready when the server is reachable: a local broker without it cannot publish or subscribe. */
function localHealth(local: LocalBroker): JsonAnswer {
  if (local.connected) return { status: 200, body: { status: "ok", role: "local", server: "connected" } };
  return { status: 503, body: { status: "unavailable", role: "local", server: "unreachable", reason: `the local broker cannot reach its server ${local.serverAddr}; it keeps retrying` } };
}

function json(answer: JsonAnswer): Response {
  return new Response(`${JSON.stringify(answer.body)}\n`, { status: answer.status, headers: { "content-type": "application/json; charset=utf-8" } });
}

/**
 * The probes answer without the token: they tell no more than whether the daemon is up. So does
 * the dashboard's page (no data in it; a browser cannot send a bearer header when opening it): it
 * asks for the token itself and sends it with its API requests.
 */
const OPEN_PATHS = new Set(["/", "/livez", "/healthz"]);

export interface HttpEndpoint {
  /** The address it listens on, `http(s)://host:port`. */
  readonly url: string;
  stop(): Promise<void>;
}

/** Starts the endpoint; throws (with the address) when it cannot listen. */
export function startHttp(target: HttpTarget, options: HttpOptions): HttpEndpoint {
  const rates = new Rates(target.server ? () => target.server.topicCounters() : undefined);
  const route = routes(target, options, rates);
  const tokenDigest = options.token === undefined ? null : digest(options.token);
  let server: Server<undefined>;
  try {
    server = Bun.serve({
      hostname: options.hostname,
      port: options.port,
      ...(options.tls ? { tls: options.tls } : {}),
      fetch(req) {
        // Bun builds req.url from the Host header: a request without a usable one (HTTP/1.0, "a b") has no URL.
        const url = URL.parse(req.url);
        if (url === null) return new Response(`${JSON.stringify({ error: "bad request: no valid Host header (send Host: HOST:PORT)" })}\n`, { status: 400, headers: { "content-type": "application/json; charset=utf-8" } });
        if (req.method !== "GET" && req.method !== "HEAD") {
          return new Response(`${JSON.stringify({ error: `method ${req.method} not allowed: the endpoint is read-only (GET)` })}\n`, { status: 405, headers: { allow: "GET, HEAD", "content-type": "application/json; charset=utf-8" } });
        }
        if (tokenDigest && !OPEN_PATHS.has(url.pathname) && !authorized(req.headers.get("authorization"), tokenDigest)) {
          return new Response(`${JSON.stringify({ error: "missing or wrong token: send the header Authorization: Bearer <token of --http-token-file>" })}\n`, {
            status: 401,
            headers: { "www-authenticate": 'Bearer realm="mq"', "content-type": "application/json; charset=utf-8" },
          });
        }
        return route(url.pathname);
      },
      error(err) {
        log.error("request failed:", err);
        return json(problem(500, `internal error: ${err.message}`));
      },
    });
  } catch (err) {
    throw new Error(`Cannot serve HTTP on ${options.hostname}:${options.port}: ${(err as Error).message}; choose another --http address`, { cause: err });
  }
  const scheme = options.tls ? "https" : "http";
  const host = options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname;
  const url = `${scheme}://${host}:${server.port}`;
  log.info(`http listening on ${url} (${PATHS[target.server ? "server" : "local"]}${tokenDigest ? "; a bearer token required but for /, /livez and /healthz" : ""})`);
  return {
    url,
    async stop() {
      rates.stop();
      await server.stop(true);
    },
  };
}

function authorized(header: string | null, want: Buffer): boolean {
  const m = header === null ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m !== null && timingSafeEqual(digest(m[1]!), want);
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}
