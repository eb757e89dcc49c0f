// The wasm Qwen3 forward pass against an independent float64 implementation (test/helpers/qwen3-reference.ts).
import { afterAll, describe, expect, it } from "vitest";
import { writeTempCheckpoint, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadRefWeights, refHiddenStates, refLogits } from "../helpers/qwen3-reference.js";
import { loadTestModel, maxRelErr } from "../helpers/model.js";
import { itWithTorch, runPython } from "../helpers/torch.js";
import { readSafetensors } from "../reference/util.js";
import { join } from "node:path";

const shapes = {
  "GQA 2, head_dim != hidden/heads": SMALL_SHAPE,
  "GQA 1 (MHA)": { ...SMALL_SHAPE, num_attention_heads: 2, num_key_value_heads: 2, head_dim: 16 },
  "GQA 4, odd hidden": { ...SMALL_SHAPE, hidden_size: 33, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 10, tie_word_embeddings: false },
};
const cleanup: TempCheckpoint[] = [];
afterAll(() => cleanup.forEach((c) => c.remove()));

describe("Qwen3 forward vs float64 reference", () => {
  for (const [name, shape] of Object.entries(shapes)) {
    it(name, async () => {
      const ck = writeTempCheckpoint(shape, { seed: 3, tied: shape.tie_word_embeddings ?? true });
      cleanup.push(ck);
      const { model, ckpt } = await loadTestModel(ck.dir);
      const ref = loadRefWeights(ckpt.config, ckpt.tensors);
      const tokens = [1, 7, 3, 42, 0, 9, 9, 17];
      const ours = model.ctx.noGrad(() => model.hiddenStates(tokens));
      const theirs = refHiddenStates(ref, tokens);
      expect(ours.length).toBe(theirs.length);
      ours.forEach((h, l) => {
        const err = maxRelErr(h.toArray(), theirs[l].flatMap((r) => Array.from(r)));
        expect(err, `hidden_states[${l}]`).toBeLessThan(2e-5);
      });
      const logits = model.ctx.noGrad(() => model.logits(ours[ours.length - 1]));
      const refL = refLogits(ref, theirs[theirs.length - 1]);
      expect(maxRelErr(logits.toArray(), refL.flatMap((r) => Array.from(r)))).toBeLessThan(2e-5);
    });
  }
});

describe("Qwen3 forward vs PyTorch (reference/forward_dump.py, float64)", () => {
  for (const [name, shape, dtype] of [
    ["GQA 2, head_dim != hidden/heads, F32", SMALL_SHAPE, "F32"],
    ["GQA 4, odd hidden, untied, BF16 in 2 shards", { ...SMALL_SHAPE, hidden_size: 33, num_key_value_heads: 1, head_dim: 10, tie_word_embeddings: false }, "BF16"],
  ] as const) {
    itWithTorch(name, async () => {
      const ck = writeTempCheckpoint(shape, { seed: 4, dtype, shards: dtype === "BF16" ? 2 : 1, tied: shape.tie_word_embeddings ?? true });
      cleanup.push(ck);
      const tokens = [3, 14, 15, 9, 26, 5, 35];
      const dump = join(ck.dir, "dump.safetensors");
      runPython(["reference/forward_dump.py", "--model", ck.dir, "--tokens", tokens.join(","), "--dtype", "float64", "--out", dump]);
      // float64 dump: read with the tests' own parser (jacsteer's reader reads only F32/F16/BF16).
      const f = readSafetensors(dump);
      const theirs = (n: string) => f.tensors.get(n)!.data;
      const { model } = await loadTestModel(ck.dir);
      const ours = model.ctx.noGrad(() => model.hiddenStates(tokens));
      ours.forEach((h, l) => expect(maxRelErr(h.toArray(), theirs(`hidden_states.${l}`)), `hidden_states[${l}]`).toBeLessThan(2e-5));
      const logits = model.ctx.noGrad(() => model.logits(ours[ours.length - 1]));
      expect(maxRelErr(logits.toArray(), theirs("logits"))).toBeLessThan(2e-5);
    });
  }
});
