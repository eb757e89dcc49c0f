// Which failures are the user's (exit 1, one line) and which are ours (exit 2).
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Errors whose message is a complete, user-facing statement of bad input. */
const INPUT_ERROR_NAMES = new Set([
  "UsageError",
  "InputError",
  "ConfigError",
  "WeightError",
  "CheckpointError",
  "SafetensorsError",
  "VectorFileError",
  "StateFileError",
  "GgufError",
  "TokenizerError",
  "OutOfWasmMemoryError",
]);

export function isInputError(e: unknown): e is Error {
  return e instanceof Error && INPUT_ERROR_NAMES.has(e.name);
}
