/**
 * Runs the Consul stand-in as its own process, for benchmarks and manual use:
 *
 *   npx tsx test/support/consul-standin-cli.ts --port 8500 [--token T] [--node-address A]
 *
 * Prints "listening http://127.0.0.1:PORT" once it accepts requests (port 0 or
 * no --port picks a free one) and stops cleanly on SIGINT/SIGTERM.
 */
import { parseArgs } from "node:util";
import { ConsulStandin } from "./consul-standin.js";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    token: { type: "string" },
    datacenter: { type: "string" },
    "node-address": { type: "string" },
  },
});

const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`--port must be a port number, got ${values.port}\n`);
  process.exit(2);
}

const standin = new ConsulStandin({
  token: values.token,
  datacenter: values.datacenter,
  nodeAddress: values["node-address"],
});
const url = await standin.start(port);
process.stdout.write(`listening ${url}\n`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    void standin.stop().then(() => process.exit(0));
  });
}
