/**
 * The subject tree: consumers indexed by the dot-separated tokens of their filters, so that
 * the consumers matching a topic are found by walking its tokens, not by testing every
 * filter. `*` matches exactly one token; `>` (last token only) one or more trailing tokens.
 */
import type { Consumer } from "./consumer.ts";

interface Node {
  children: Map<string, Node>;
  /** Consumers whose filter ends at this node. */
  here: Consumer[];
  /** Consumers whose filter ends with `>` right below this node. */
  rest: Consumer[];
}

function node(): Node {
  return { children: new Map(), here: [], rest: [] };
}

export class SubjectTree {
  private readonly root = node();
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(consumer: Consumer): void {
    const tokens = consumer.filter.split(".");
    let at = this.root;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (token === ">" && i === tokens.length - 1) {
        at.rest.push(consumer);
        this.count++;
        return;
      }
      let next = at.children.get(token);
      if (!next) at.children.set(token, (next = node()));
      at = next;
    }
    at.here.push(consumer);
    this.count++;
  }

  /** Removes the consumer of `id` with `filter`; returns it, or undefined when there is none. */
  remove(id: number, filter: string): Consumer | undefined {
    const tokens = filter.split(".");
    const path: Array<[Node, string]> = [];
    let at = this.root;
    let list: Consumer[] | undefined;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (token === ">" && i === tokens.length - 1) {
        list = at.rest;
        break;
      }
      const next = at.children.get(token);
      if (!next) return undefined;
      path.push([at, token]);
      at = next;
    }
    list ??= at.here;
    const k = list.findIndex((c) => c.id === id && c.filter === filter);
    if (k < 0) return undefined;
    const [gone] = list.splice(k, 1);
    this.count--;
    // Prune the nodes left empty, deepest first.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, token] = path[i]!;
      const child = parent.children.get(token)!;
      if (child.children.size > 0 || child.here.length > 0 || child.rest.length > 0) break;
      parent.children.delete(token);
    }
    return gone;
  }

  /** The consumers whose filter matches the topic `name` (each once). */
  match(name: string): Consumer[] {
    const out: Consumer[] = [];
    this.walk(this.root, name.split("."), 0, out);
    return out;
  }

  private walk(at: Node, tokens: string[], i: number, out: Consumer[]): void {
    if (i === tokens.length) {
      // A loop, not push(...): a spread of a very long list overflows the stack.
      for (const c of at.here) out.push(c);
      return;
    }
    // `>` needs at least one token left, which there is.
    for (const c of at.rest) out.push(c);
    const exact = at.children.get(tokens[i]!);
    if (exact) this.walk(exact, tokens, i + 1, out);
    const star = at.children.get("*");
    if (star) this.walk(star, tokens, i + 1, out);
  }
}

/** True when the pattern (or exact name) `filter` matches the topic `name`. */
export function filterMatches(filter: string, name: string): boolean {
  const f = filter.split(".");
  const t = name.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">" && i === f.length - 1) return t.length > i;
    if (i >= t.length) return false;
    if (f[i] !== "*" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
