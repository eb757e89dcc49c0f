// safetensors: strict parsing, reading as f32, and writing. Platform-neutral (Uint8Array + ByteSource);
// file access for Node lives in src/node/safetensors-file.ts.
export { SafetensorsError } from "./errors.js";
export { DTYPE_BITS, isDtype, isFloatDtype, type Dtype, type FloatDtype } from "./dtype.js";
export {
  MAX_HEADER_BYTES,
  METADATA_KEY,
  parseSafetensorsHeader,
  readHeaderLength,
  type SafetensorsHeader,
  type TensorInfo,
} from "./header.js";
export { SafetensorsReader, bytesSource, READ_CHUNK_BYTES, type ByteSource } from "./reader.js";
export {
  planSafetensors,
  serializeSafetensors,
  encodeTensorData,
  type TensorSpec,
  type TensorToWrite,
  type PlannedTensor,
  type SafetensorsPlan,
} from "./serialize.js";
export {
  f32ToBf16Bits,
  bf16BitsToF32,
  f32ToF16Bits,
  f16BitsToF32,
  roundToBf16,
  roundToF16,
  encodeBf16,
  decodeBf16,
  encodeF16,
  decodeF16,
} from "./float16.js";
