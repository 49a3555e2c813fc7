/**
 * The live status endpoint against its contract (src/contract/status.ts):
 * a strict reader of the Prometheus text format, and one check that the
 * JSON document parses with the schema and that the Prometheus families
 * are exactly those PROMETHEUS_METRICS names for the spec, each typed once
 * with its type and every sample with its labels. The status, static and
 * DNS tests run it against their own specs (Lua engine, static upstreams
 * with and without ngx.upstream, discovery: dns).
 */
import { expect } from "vitest";
import { PROMETHEUS_METRICS, statusDocumentSchema, type StatusDocument } from "../../src/contract/status.js";
import { request, type RequestOptions } from "./load.js";

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A strict reader of the text exposition format: throws on any malformed line. */
export function parsePrometheus(text: string): { samples: PromSample[]; types: Map<string, string> } {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const seenFamilies: string[] = [];
  expect(text.endsWith("\n")).toBe(true);
  for (const line of text.slice(0, -1).split("\n")) {
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$/.exec(line);
    if (m) {
      expect(helps.has(m[1]!), `HELP twice for ${m[1]}`).toBe(false);
      helps.add(m[1]!);
      continue;
    }
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (gauge|counter)$/.exec(line);
    if (m) {
      expect(types.has(m[1]!), `TYPE twice for ${m[1]}`).toBe(false);
      types.set(m[1]!, m[2]!);
      seenFamilies.push(m[1]!);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+]+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
      let lm: RegExpExecArray | null;
      let consumed = 0;
      while ((lm = re.exec(m[2])) !== null) {
        labels[lm[1]!] = lm[2]!;
        consumed = re.lastIndex;
      }
      expect(consumed, `labels of ${line}`).toBe(m[2].length);
    }
    // Samples follow their own family's TYPE line, families are not interleaved.
    expect(seenFamilies[seenFamilies.length - 1], line).toBe(m[1]);
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { samples, types };
}

/** The value of the first sample of `name` whose labels include `labels`. */
export function sampleValue(samples: PromSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

export interface ServedFamilies {
  /** The spec has static upstreams (gen_lb_static_upstream_servers). */
  staticUpstreams: boolean;
  /** ...and the target has ngx.upstream (the static peer families); OpenResty does, Debian's nginx does not. */
  ngxUpstream: boolean;
}

/**
 * Reads `statusUrl` as JSON and as Prometheus text and checks both against
 * the contract; returns the parsed document and samples for the caller's own
 * assertions.
 */
export async function expectStatusContract(statusUrl: string, served: ServedFamilies): Promise<{ doc: StatusDocument; samples: PromSample[] }> {
  const res = await request(statusUrl);
  expect(res.status, res.body).toBe(200);
  const parsed = statusDocumentSchema.safeParse(JSON.parse(res.body));
  expect(parsed.success ? [] : parsed.error.issues, res.body).toEqual([]);

  const prom = await request(`${statusUrl}?format=prometheus`);
  expect(prom.status, prom.body).toBe(200);
  const { samples, types } = parsePrometheus(prom.body);
  const expected = Object.entries(PROMETHEUS_METRICS).filter(([, m]) => {
    if (!("requires" in m)) return true;
    return served.staticUpstreams && (m.requires === "static_upstreams" || served.ngxUpstream);
  });
  expect(Object.fromEntries(types)).toEqual(Object.fromEntries(expected.map(([n, m]) => [n, m.type])));
  for (const sample of samples) {
    const want = PROMETHEUS_METRICS[sample.name as keyof typeof PROMETHEUS_METRICS];
    expect(want, sample.name).toBeDefined();
    expect(Object.keys(sample.labels).sort(), sample.name).toEqual([...want.labels].sort());
  }
  return { doc: parsed.data!, samples };
}

/** The status document at `statusUrl` (with its query), parsed with the schema: throws on any field the contract does not allow. */
export async function readStatus(statusUrl: string, opts: RequestOptions = {}): Promise<StatusDocument> {
  const res = await request(statusUrl, { timeoutMs: 5000, ...opts });
  if (res.status !== 200) throw new Error(`status: HTTP ${res.status}: ${res.body}`);
  return statusDocumentSchema.parse(JSON.parse(res.body));
}
