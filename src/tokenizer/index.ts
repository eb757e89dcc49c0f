// Text -> token ids: the checkpoint's tokenizer.json and chat template, platform-neutral.
export {
  loadTokenizer,
  renderPrompt,
  renderPromptText,
  chatTemplateOf,
  type TextTokenizer,
  type ChatMessage,
  type ChatTemplateOptions,
  type EncodeOptions,
  type DecodeOptions,
  type LoadTokenizerOptions,
  type RenderPromptOptions,
} from "./tokenizer.js";
export {
  bytesToUnicode,
  makeByteLevelTokenizerJson,
  makeTinyTokenizerConfig,
  tinyTokenizerFiles,
  TINY_CHAT_TEMPLATE,
} from "./byte-level.js";
export { TokenizerError } from "./errors.js";
