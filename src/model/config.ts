// Qwen3 configuration as transformers' Qwen3Config names it, validated with errors that name the file and field.

export interface Qwen3Config {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

const SUPPORTED_MODEL_TYPES = ["qwen3"];

/** Parse a config.json object. `file` is named in every error. */
export function parseQwen3Config(json: unknown, file = "config.json"): Qwen3Config {
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new ConfigError(`${file}: expected a JSON object`);
  const c = json as Record<string, unknown>;
  const modelType = c.model_type;
  if (typeof modelType !== "string") throw new ConfigError(`${file}: missing "model_type"`);
  if (!SUPPORTED_MODEL_TYPES.includes(modelType)) {
    throw new ConfigError(`${file}: unsupported model_type "${modelType}" (jacsteer supports ${SUPPORTED_MODEL_TYPES.join(", ")})`);
  }
  const int = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new ConfigError(`${file}: "${key}" must be a positive integer, got ${JSON.stringify(c[key])}`);
    return v;
  };
  const num = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new ConfigError(`${file}: "${key}" must be a positive number, got ${JSON.stringify(c[key])}`);
    return v;
  };
  const hiddenSize = int("hidden_size");
  const numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  // Qwen3 configs carry head_dim explicitly; it need not equal hidden_size / heads.
  const headDim = c.head_dim === undefined || c.head_dim === null ? hiddenSize / numHeads : int("head_dim");
  if (!Number.isInteger(headDim)) throw new ConfigError(`${file}: no "head_dim" and hidden_size ${hiddenSize} is not a multiple of ${numHeads} heads`);
  if (headDim % 2 !== 0) throw new ConfigError(`${file}: "head_dim" ${headDim} must be even for rotary embeddings`);
  if (numHeads % numKvHeads !== 0) throw new ConfigError(`${file}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const act = c.hidden_act ?? "silu";
  if (act !== "silu") throw new ConfigError(`${file}: unsupported hidden_act "${String(act)}" (Qwen3 uses silu)`);
  if (c.attention_bias === true) throw new ConfigError(`${file}: attention_bias true is not supported`);
  if (c.rope_scaling !== undefined && c.rope_scaling !== null) {
    throw new ConfigError(`${file}: rope_scaling ${JSON.stringify(c.rope_scaling)} is not supported (plain RoPE only)`);
  }
  return {
    hiddenSize,
    intermediateSize: int("intermediate_size"),
    numLayers: int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num("rms_norm_eps", 1e-6),
    ropeTheta: num("rope_theta", 1000000),
    vocabSize: int("vocab_size"),
    tieWordEmbeddings: c.tie_word_embeddings === undefined ? false : c.tie_word_embeddings === true,
    maxPositionEmbeddings: int("max_position_embeddings", 40960),
  };
}

/** Every tensor the model needs, with its [out, in] shape, in checkpoint naming. */
export function qwen3TensorShapes(cfg: Qwen3Config, layers = cfg.numLayers): Map<string, number[]> {
  const d = cfg.hiddenSize, hd = cfg.headDim;
  const m = new Map<string, number[]>();
  m.set("model.embed_tokens.weight", [cfg.vocabSize, d]);
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.`;
    m.set(p + "input_layernorm.weight", [d]);
    m.set(p + "self_attn.q_proj.weight", [cfg.numHeads * hd, d]);
    m.set(p + "self_attn.k_proj.weight", [cfg.numKvHeads * hd, d]);
    m.set(p + "self_attn.v_proj.weight", [cfg.numKvHeads * hd, d]);
    m.set(p + "self_attn.o_proj.weight", [d, cfg.numHeads * hd]);
    m.set(p + "self_attn.q_norm.weight", [hd]);
    m.set(p + "self_attn.k_norm.weight", [hd]);
    m.set(p + "post_attention_layernorm.weight", [d]);
    m.set(p + "mlp.gate_proj.weight", [cfg.intermediateSize, d]);
    m.set(p + "mlp.up_proj.weight", [cfg.intermediateSize, d]);
    m.set(p + "mlp.down_proj.weight", [d, cfg.intermediateSize]);
  }
  return m;
}

/** Every tensor of a full checkpoint, in module order: the layers, the final norm, and lm_head unless tied. */
export function qwen3CheckpointTensors(cfg: Qwen3Config): Map<string, number[]> {
  const m = qwen3TensorShapes(cfg);
  m.set("model.norm.weight", [cfg.hiddenSize]);
  if (!cfg.tieWordEmbeddings) m.set("lm_head.weight", [cfg.vocabSize, cfg.hiddenSize]);
  return m;
}
