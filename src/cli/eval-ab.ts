// Placeholder until this command lands (see the open issues); it must not ship as "done".
import { UsageError } from "./errors.js";

export async function evalAb(_argv: string[]): Promise<number> {
  throw new UsageError("jacsteer eval-ab is not implemented yet");
}
