/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for the tests of /metrics:
 * every line must be a `# HELP`, a `# TYPE` or a well-formed sample `name{labels} value`;
 * every sample must belong to a family with a `# TYPE` before it; a histogram's buckets must
 * be cumulative, end with le="+Inf", and come with `_sum` and `_count` (= the +Inf bucket).
 * Throws an Error naming the line on anything else.
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromExposition {
  types: Map<string, string>;
  samples: PromSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/;

export function parseProm(text: string): PromExposition {
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("the exposition must end with a newline");
  const types = new Map<string, string>();
  const samples: PromSample[] = [];
  for (const line of text.split("\n").slice(0, -1)) {
    if (line.startsWith("# HELP ")) {
      if (!NAME.test(line.split(" ")[2] ?? "")) throw new Error(`bad HELP line: ${line}`);
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const [, , name, type, extra] = line.split(" ");
      if (!NAME.test(name ?? "") || !["counter", "gauge", "histogram", "summary", "untyped"].includes(type ?? "") || extra !== undefined) throw new Error(`bad TYPE line: ${line}`);
      if (types.has(name!)) throw new Error(`second TYPE for ${name}`);
      types.set(name!, type!);
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`malformed sample line: ${JSON.stringify(line)}`);
    const value = m[4] === "+Inf" ? Infinity : m[4] === "-Inf" ? -Infinity : Number(m[4]);
    if (Number.isNaN(value) && m[4] !== "NaN") throw new Error(`bad value in ${JSON.stringify(line)}`);
    const labels = m[3] === undefined ? {} : parseLabels(m[3], line);
    const name = m[1]!;
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
    if (!types.has(family)) throw new Error(`sample ${name} has no # TYPE before it`);
    if (family !== name && types.get(family) !== "histogram" && types.get(family) !== "summary") throw new Error(`sample ${name} of the ${types.get(family)} ${family}`);
    samples.push({ name, labels, value });
  }
  checkHistograms(types, samples);
  return { types, samples };
}

/** `a="x",b="y\"z"`: label values with `\\`, `\"` and `\n` escapes. */
function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) throw new Error(`bad labels in ${JSON.stringify(line)}`);
    if (m[1]! in labels) throw new Error(`label ${m[1]} twice in ${JSON.stringify(line)}`);
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    at = re.lastIndex;
  }
  return labels;
}

function checkHistograms(types: Map<string, string>, samples: PromSample[]): void {
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const buckets = samples.filter((s) => s.name === `${family}_bucket`);
    if (buckets.length === 0) throw new Error(`histogram ${family} has no buckets`);
    let previous = -Infinity;
    let last = 0;
    for (const b of buckets) {
      const le = b.labels.le === "+Inf" ? Infinity : Number(b.labels.le);
      if (!(le > previous)) throw new Error(`histogram ${family}: bucket le=${b.labels.le} out of order`);
      if (b.value < last) throw new Error(`histogram ${family}: buckets not cumulative at le=${b.labels.le}`);
      previous = le;
      last = b.value;
    }
    if (buckets[buckets.length - 1]!.labels.le !== "+Inf") throw new Error(`histogram ${family}: no le="+Inf" bucket`);
    const count = samples.find((s) => s.name === `${family}_count`);
    if (!samples.some((s) => s.name === `${family}_sum`) || !count) throw new Error(`histogram ${family}: _sum or _count missing`);
    if (count.value !== last) throw new Error(`histogram ${family}: _count ${count.value} is not the +Inf bucket ${last}`);
  }
}

/** The value of the one sample `name` whose labels include `labels`; throws if none or several. */
export function valueOf(e: PromExposition, name: string, labels: Record<string, string> = {}): number {
  const found = e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`${found.length} samples ${name}${JSON.stringify(labels)}`);
  return found[0]!.value;
}
