/**
 * The store's events on the PostgreSQL channel `mq_events` (schema.ts): one text payload per
 * event, `SERVER KIND ARGS…`, sent with pg_notify in the transaction that made the change (so
 * it is delivered at commit, and not at all on a rollback). Topic names are tokens
 * ([A-Za-z0-9_-] and dots, lib/wire/topic.ts) and server ids have no spaces, so a space
 * separates. An event that does not parse is ignored: they are hints.
 */
import type { StoreEvent } from "../types.ts";

export function encodeEvent(serverId: string, event: StoreEvent): string {
  switch (event.kind) {
    case "appended":
      return `${serverId} appended ${event.lastSeq} ${event.topic}`;
    case "topic":
      return `${serverId} topic ${event.topic}`;
    case "client":
      return `${serverId} client ${event.id} ${event.owner}`;
    case "destroyed":
      return `${serverId} destroyed ${event.id}`;
    case "subscribers":
      return `${serverId} subscribers ${event.id} ${event.topic}`;
    case "consumers":
      return `${serverId} consumers ${event.id}`;
    case "groups":
      return `${serverId} groups`;
    case "resync":
      return `${serverId} resync`;
  }
}

/** The event and the server that caused it, or null for a payload that is not one. */
export function decodeEvent(payload: string): { from: string; event: StoreEvent } | null {
  const parts = payload.split(" ");
  const [from, kind] = parts;
  if (!from || !kind) return null;
  const num = (i: number) => {
    const n = Number(parts[i]);
    return Number.isSafeInteger(n) && n >= 0 ? n : null;
  };
  // The broker identity of `client` may hold spaces: it is everything after the id.
  const rest = (i: number) => parts.slice(i).join(" ");
  switch (kind) {
    case "appended": {
      const lastSeq = num(2);
      return lastSeq === null || !parts[3] ? null : { from, event: { kind, topic: parts[3], lastSeq } };
    }
    case "topic":
      return parts[2] ? { from, event: { kind, topic: parts[2] } } : null;
    case "client": {
      const id = num(2);
      return id === null || parts.length < 4 ? null : { from, event: { kind, id, owner: rest(3) } };
    }
    case "destroyed":
    case "consumers": {
      const id = num(2);
      return id === null ? null : { from, event: { kind, id } };
    }
    case "subscribers": {
      const id = num(2);
      return id === null || !parts[3] ? null : { from, event: { kind, topic: parts[3], id } };
    }
    case "groups":
    case "resync":
      return { from, event: { kind } };
    default:
      return null;
  }
}
