/** The discovery tests' names for test/support/stack.ts: its "discovery" profile by default. */
import { Stack as ProfiledStack, type StackOptions } from "../support/stack.js";

export { instance, type NodeView, type StackOptions, type UpstreamView } from "../support/stack.js";
export { pacedLoad, sample, type PacedLoad } from "../support/load.js";

export class Stack extends ProfiledStack {
  static override spec(options: StackOptions, consulUrls: string[], port: number, statusPort?: number): Record<string, unknown> {
    return ProfiledStack.spec({ profile: "discovery", ...options }, consulUrls, port, statusPort);
  }

  static override start(options: StackOptions = {}): Promise<ProfiledStack> {
    return ProfiledStack.start({ profile: "discovery", ...options });
  }
}
