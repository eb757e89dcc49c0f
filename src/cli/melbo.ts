// Placeholder until this command lands (see the open issues); it must not ship as "done".
import { UsageError } from "./errors.js";

export async function melbo(_argv: string[]): Promise<number> {
  throw new UsageError("jacsteer melbo is not implemented yet");
}
