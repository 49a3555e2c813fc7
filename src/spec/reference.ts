/**
 * The spec reference in the README, generated from the JSON Schema so the
 * two cannot drift (a test compares them): one row per key, with its type,
 * default and description.
 */
type JsonSchema = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  $ref?: string;
};

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" \\| ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.anyOf) return [...new Set(s.anyOf.map(typeOf))].join(" \\| ");
  if (s.$ref) return "directive";
  if (s.type === "array") return `list of ${s.items ? typeOf(s.items) : "any"}`;
  if (s.type === "object" && s.additionalProperties && typeof s.additionalProperties === "object" && !s.properties) return "map";
  return Array.isArray(s.type) ? s.type.join(" \\| ") : (s.type ?? "any");
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

export function specReference(schema: JsonSchema): string {
  const rows: string[] = ["| key | type | default | description |", "| --- | --- | --- | --- |"];
  const visit = (s: JsonSchema, path: string) => {
    const object = s.properties ? s : s.anyOf?.find((a) => a.properties);
    for (const [key, child] of Object.entries(object?.properties ?? {})) {
      if (key === "$schema") continue;
      const p = path ? `${path}.${key}` : key;
      const def = child.default === undefined || (typeof child.default === "object" && child.default !== null) ? "" : `\`${JSON.stringify(child.default)}\``;
      rows.push(`| \`${p}\` | ${cell(typeOf(child))} | ${def} | ${cell(child.description ?? "")} |`);
      if (child.properties) visit(child, p);
      if (child.items?.properties) visit(child.items, `${p}[]`);
      if (child.items?.anyOf) visit(child.items, `${p}[]`);
      if (child.anyOf?.some((a) => a.properties)) visit(child, p);
      const extra = child.additionalProperties;
      if (extra && typeof extra === "object" && extra.properties) visit(extra, `${p}.<name>`);
    }
  };
  visit(schema, "");
  return rows.join("\n") + "\n";
}
