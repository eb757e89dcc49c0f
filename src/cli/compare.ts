// Placeholder until this command lands (see the open issues); it must not ship as "done".
import { UsageError } from "./errors.js";

export async function compare(_argv: string[]): Promise<number> {
  throw new UsageError("jacsteer compare is not implemented yet");
}
