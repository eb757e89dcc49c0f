// The dtypes of the safetensors format (huggingface/safetensors `Dtype`), with element widths in bits.
// All of them parse; only F32, F16 and BF16 can be read as or written from f32.

/** Width in bits of one element, for every dtype the reference implementation knows. */
export const DTYPE_BITS = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;

export type Dtype = keyof typeof DTYPE_BITS;

/** The dtypes this package converts to and from f32. */
export type FloatDtype = "F32" | "F16" | "BF16";

export function isDtype(s: string): s is Dtype {
  return Object.prototype.hasOwnProperty.call(DTYPE_BITS, s);
}

export function isFloatDtype(s: string): s is FloatDtype {
  return s === "F32" || s === "F16" || s === "BF16";
}

/**
 * Rank used to order tensors when writing: the reference writes larger-alignment dtypes first
 * (descending `Dtype` enum order, then by name), so every tensor's data stays aligned.
 */
export function dtypeRank(d: Dtype): number {
  return DTYPE_ORDER.indexOf(d);
}

const DTYPE_ORDER = Object.keys(DTYPE_BITS) as Dtype[];
