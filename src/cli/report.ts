// Placeholder until this command lands (see the open issues); it must not ship as "done".
import { UsageError } from "./errors.js";

export async function report(_argv: string[]): Promise<number> {
  throw new UsageError("jacsteer report is not implemented yet");
}
