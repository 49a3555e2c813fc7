/**
 * Reading a spec: text -> YAML document with source positions. JSON is read
 * by the same parser (it is YAML 1.2), so both get line:column in errors.
 */
import { isMap, isSeq, LineCounter, parseDocument, type Document, type Node } from "yaml";

export interface SourcePosition {
  file: string;
  line: number;
  column: number;
}

export interface SpecDiagnostic {
  /** Dotted spec path, e.g. `servers[0].locations[1].upstream`; "" for the whole file. */
  path: string;
  position: SourcePosition;
  message: string;
  /**
   * A warning that the directive-table's reference build lacks a module the
   * spec uses (src/pipeline/directive-check.ts): moot once a binary's -V is
   * read, which check and install then judge instead (binary-check.ts).
   */
  needsBuildFlag?: true;
}

export interface LoadedSpec {
  file: string;
  /** Plain data for the schema. */
  data: unknown;
  /** Resolve a spec path (array of keys/indices) to where it was written. */
  locate(path: readonly PropertyKey[]): SourcePosition;
}

export type LoadResult =
  | { ok: true; spec: LoadedSpec }
  | { ok: false; errors: SpecDiagnostic[] };

/** Format a path array as users write it: `servers[0].listen`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** `servers[0].listen (gen-lb.yaml:12:5): message` — path and position first. */
export function formatDiagnostic(d: SpecDiagnostic): string {
  const where = `${d.position.file}:${d.position.line}:${d.position.column}`;
  return d.path === "" ? `${where}: ${d.message}` : `${d.path} (${where}): ${d.message}`;
}

/**
 * Parse spec text. Pure: the caller reads the file. Valid JSON takes the fast
 * path (JSON.parse); its positions are worked out only if an error needs one.
 */
export function loadSpecText(text: string, file: string): LoadResult {
  if (/^\s*\{/.test(text)) {
    try {
      const data: unknown = JSON.parse(text);
      let positions: LoadResult | undefined;
      return {
        ok: true,
        spec: {
          file,
          data,
          locate: (path) => {
            positions ??= loadYamlText(text, file);
            return positions.ok ? positions.spec.locate(path) : { file, line: 1, column: 1 };
          },
        },
      };
    } catch {
      // Not strict JSON: YAML's parser reads JSON-ish text and says where it breaks.
    }
  }
  return loadYamlText(text, file);
}

function loadYamlText(text: string, file: string): LoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number): SourcePosition => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };

  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((e) => ({
        path: "",
        position: at(e.pos[0]),
        message: `${file.endsWith(".json") ? "invalid JSON/YAML" : "invalid YAML"}: ${e.message.split("\n")[0]}`,
      })),
    };
  }
  if (doc.contents === null || text.trim() === "") {
    return {
      ok: false,
      errors: [{ path: "", position: { file, line: 1, column: 1 }, message: "the spec is empty; run `gen-lb init` for a starter spec" }],
    };
  }
  if (!isMap(doc.contents)) {
    return {
      ok: false,
      errors: [{ path: "", position: at(doc.contents.range?.[0] ?? 0), message: "the spec must be a mapping (key: value) at the top level" }],
    };
  }

  return {
    ok: true,
    spec: {
      file,
      data: doc.toJS({ maxAliasCount: 100 }),
      locate: (path) => at(offsetOf(doc, path)),
    },
  };
}

/**
 * Where a path was written: the node itself, or for a key that is missing,
 * the deepest parent that exists. For a map key we point at the key, which
 * is where the eye goes.
 */
function offsetOf(doc: Document, path: readonly PropertyKey[]): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => keyString(p.key) === String(key));
      if (!pair) break;
      offset = (pair.key as Node | null)?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof key === "number") {
      const item = node.items[key] as Node | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return offset;
}

function keyString(key: unknown): string {
  if (key !== null && typeof key === "object" && "value" in key) return String((key as { value: unknown }).value);
  return String(key);
}
