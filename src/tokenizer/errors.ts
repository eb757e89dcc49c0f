/** A tokenizer file or chat template that cannot be used: the message names the file. */
export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TokenizerError";
  }
}
