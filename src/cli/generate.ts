// Placeholder until this command lands (see the open issues); it must not ship as "done".
import { UsageError } from "./errors.js";

export async function generate(_argv: string[]): Promise<number> {
  throw new UsageError("jacsteer generate is not implemented yet");
}
