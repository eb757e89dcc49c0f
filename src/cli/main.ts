// The `jacsteer` command: dispatch to a subcommand; map failures to exit codes
// (1: bad usage or input, one line naming the flag/file/tensor; 2: an internal error).
import { isInputError } from "./errors.js";
import { powerIter, POWER_ITER_HELP } from "./power-iter.js";

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  "power-iter": powerIter,
};

const HELP = `usage: jacsteer <command> [flags]

commands:
  power-iter   top singular vectors of the steering Jacobian

Run \`jacsteer <command> --help\` for its flags.

${POWER_ITER_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(HELP);
    return cmd ? 0 : 1;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    process.stderr.write(`jacsteer: error: unknown command "${cmd}" (commands: ${Object.keys(COMMANDS).join(", ")})\n`);
    return 1;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (isInputError(e)) {
      process.stderr.write(`jacsteer: error: ${e.message.split("\n")[0]}\n`);
      return 1;
    }
    process.stderr.write(`jacsteer: internal error: ${(e as Error)?.message ?? String(e)}\n`);
    if (process.env.JACSTEER_DEBUG) process.stderr.write(`${(e as Error)?.stack}\n`);
    return 2;
  }
}
