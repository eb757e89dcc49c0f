/**
 * Every problem with a safetensors file: malformed header, inconsistent offsets, a missing tensor,
 * an unsupported dtype, a short read. The message always names the file, and the tensor when there
 * is one; `file` and `tensor` carry the same for programs.
 */
export class SafetensorsError extends Error {
  readonly file: string;
  readonly tensor: string | undefined;

  constructor(file: string, message: string, tensor?: string) {
    super(tensor === undefined ? `${file}: ${message}` : `${file}: tensor "${tensor}": ${message}`);
    this.name = "SafetensorsError";
    this.file = file;
    this.tensor = tensor;
  }
}
