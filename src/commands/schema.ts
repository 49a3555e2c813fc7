import { specJsonSchema } from "../spec/json-schema.js";
import type { Io } from "./io.js";

export default async function schema(_opts: unknown, io: Io): Promise<void> {
  io.out(JSON.stringify(specJsonSchema(), null, 2) + "\n");
}
