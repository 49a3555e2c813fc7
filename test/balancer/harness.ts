/** The balancer, health and status tests' names for test/support/stack.ts (its "balancer" profile, the default). */
export { luaLocation, share, Stack as Lb, startBackends as backends, type StackOptions as LbOptions } from "../support/stack.js";
export type { LuaStatusDocument as StatusDoc, PeerStatus, UpstreamStatus } from "../support/stack.js";
