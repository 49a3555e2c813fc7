import { z } from "zod";
import { specSchema } from "./schema.js";

/** The JSON Schema users point yaml-language-server at; schema/gen-lb.schema.json is a committed copy. */
export function specJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(specSchema, { io: "input", unrepresentable: "any", target: "draft-2020-12" }) as Record<string, unknown>;
  return { title: "gen-lb spec", ...schema };
}
