// Text <-> token ids for a Hugging Face checkpoint, from the parsed `tokenizer.json` (and optionally
// `tokenizer_config.json`). Tokenization is done by tokenizers.js (@huggingface/tokenizers), chat
// rendering by @huggingface/jinja; this file adapts both to what jacsteer needs and papers over the
// library's edges (see the comments at each workaround). Platform-neutral: no Node imports.
import { TokenizerError } from "./errors.js";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplateOptions {
  /** Append the opening of an assistant turn (`add_generation_prompt` in transformers). */
  addGenerationPrompt: boolean;
  /** Passed to the template as `enable_thinking`; Qwen3 with `false` appends an empty think block. */
  enableThinking: boolean;
}

export interface EncodeOptions {
  /**
   * Let the checkpoint's post-processor add its special tokens (transformers' default, true).
   * Qwen's post-processor adds none. Chat prompts are encoded with false, as
   * `apply_chat_template(tokenize=True)` does, because the template already holds them.
   */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (added tokens marked `special`) from the text. Default false. */
  skipSpecialTokens?: boolean;
}

export interface TextTokenizer {
  encode(text: string, opts?: EncodeOptions): number[];
  /** Ids with no token (e.g. the padding rows of an embedding larger than the vocabulary) are skipped. */
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** Largest token id + 1, added tokens included (Qwen3: 151669; the model's embedding may be larger). */
  readonly vocabSize: number;
  /** Ids that end generation: the config's `eos_token`, plus any given in `LoadTokenizerOptions.eosTokenIds`. */
  readonly eosTokenIds: readonly number[];
  readonly hasChatTemplate: boolean;
  /** Renders messages with the checkpoint's chat template; throws if it has none. */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
}

export interface LoadTokenizerOptions {
  /** A chat template that overrides the config's (newer checkpoints keep it in `chat_template.jinja`). */
  chatTemplate?: string;
  /** More end-of-sequence ids, e.g. from `generation_config.json`'s `eos_token_id`. */
  eosTokenIds?: readonly number[];
  /** Where the files came from (a directory), named in error messages. */
  source?: string;
}

type Json = Record<string, unknown>;

const SPECIAL_TOKEN_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;

function isObject(x: unknown): x is Json {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Special tokens in tokenizer_config.json are strings, or AddedToken objects `{content, ...}`. */
function specialTokenString(x: unknown): string | undefined {
  if (typeof x === "string") return x;
  if (isObject(x) && typeof x.content === "string") return x.content;
  return undefined;
}

/**
 * The chat template in a tokenizer_config.json: a string, or (multi-template checkpoints) a list of
 * `{name, template}` of which transformers uses the one named "default".
 */
export function chatTemplateOf(config: Json): string | undefined {
  const t = config.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t.filter(
      (e): e is { name: string; template: string } =>
        isObject(e) && typeof e.name === "string" && typeof e.template === "string",
    );
    return (named.find((e) => e.name === "default") ?? named[0])?.template;
  }
  if (isObject(t)) {
    const d = t.default;
    if (typeof d === "string") return d;
  }
  return undefined;
}

export function loadTokenizer(
  tokenizerJson: object,
  tokenizerConfig?: object,
  options: LoadTokenizerOptions = {},
): TextTokenizer {
  const where = options.source ? `${options.source}: ` : "";
  if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) {
    throw new TokenizerError(`${where}tokenizer.json has no "model" object; is this a Hugging Face tokenizer.json?`);
  }
  const config: Json = isObject(tokenizerConfig) ? { ...tokenizerConfig } : {};
  // tokenizers.js iterates `added_tokens` unconditionally; the format allows it to be absent.
  const json: Json = { ...tokenizerJson, added_tokens: tokenizerJson.added_tokens ?? [] };
  // tokenizers.js defaults clean_up_tokenization_spaces to true, which rewrites " ." to "." etc. and so
  // breaks decode(encode(x)) == x; recent transformers default it to false. Honour it only when set.
  config.clean_up_tokenization_spaces = config.clean_up_tokenization_spaces === true;

  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, config);
  } catch (e) {
    throw new TokenizerError(`${where}tokenizer.json: cannot build the tokenizer (${(e as Error).message})`);
  }

  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) if (id + 1 > vocabSize) vocabSize = id + 1;

  const tokenToId = (token: string) => tok.token_to_id(token);
  const idToToken = (id: number) => (Number.isInteger(id) && id >= 0 ? tok.id_to_token(id) : undefined);

  const eosTokenIds: number[] = [];
  const eosToken = specialTokenString(config.eos_token);
  const eosId = eosToken === undefined ? undefined : tokenToId(eosToken);
  if (eosId !== undefined) eosTokenIds.push(eosId);
  for (const id of options.eosTokenIds ?? []) if (!eosTokenIds.includes(id)) eosTokenIds.push(id);

  const templateSource = options.chatTemplate ?? chatTemplateOf(config);
  let template: Template | undefined;
  const getTemplate = (): Template => {
    if (templateSource === undefined) {
      throw new TokenizerError(
        `${where}the checkpoint has no chat template (no "chat_template" in tokenizer_config.json and no chat_template.jinja)`,
      );
    }
    if (!template) {
      try {
        template = new Template(templateSource);
      } catch (e) {
        throw new TokenizerError(`${where}cannot parse the chat template (${(e as Error).message})`);
      }
    }
    return template;
  };
  // What transformers puts in the template's namespace besides messages and kwargs.
  const specialTokens: Json = {};
  for (const k of SPECIAL_TOKEN_KEYS) {
    const s = specialTokenString(config[k]);
    if (s !== undefined) specialTokens[k] = s;
  }
  if (Array.isArray(config.additional_special_tokens)) {
    specialTokens.additional_special_tokens = config.additional_special_tokens
      .map(specialTokenString)
      .filter((s): s is string => s !== undefined);
  }

  return {
    encode(text: string, opts: EncodeOptions = {}): number[] {
      if (text.length === 0) return [];
      const { ids } = tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true });
      // Unknown ids come back undefined when the model has no unk token; never pass them on silently.
      for (let i = 0; i < ids.length; i++) {
        if (!Number.isInteger(ids[i])) {
          throw new TokenizerError(`${where}tokenizer.json: cannot map a piece of ${JSON.stringify(text.slice(0, 40))} to an id`);
        }
      }
      return ids;
    },
    decode(ids: readonly number[], opts: DecodeOptions = {}): string {
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0) throw new RangeError(`token id ${id} is not a non-negative integer`);
      }
      // As the Rust tokenizers do: ids without a token are dropped (tokenizers.js would emit "undefined").
      const known = ids.filter((id) => tok.id_to_token(id) !== undefined);
      // tokenizers.js throws on an empty list.
      if (known.length === 0) return "";
      return tok.decode(known, { skip_special_tokens: opts.skipSpecialTokens ?? false });
    },
    vocabSize,
    eosTokenIds,
    hasChatTemplate: templateSource !== undefined,
    applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions): string {
      const t = getTemplate();
      try {
        return t.render({
          ...specialTokens,
          messages: messages.map((m) => ({ role: m.role, content: m.content })),
          add_generation_prompt: opts.addGenerationPrompt,
          enable_thinking: opts.enableThinking,
        });
      } catch (e) {
        throw new TokenizerError(`${where}the chat template failed to render (${(e as Error).message})`);
      }
    },
    tokenToId,
    idToToken,
  };
}

export interface RenderPromptOptions {
  /** Render `text` as a user message with the chat template, generation prompt added, thinking disabled. */
  chat?: boolean;
  /** System message placed before the user message (chat only). */
  system?: string;
}

/** The text a prompt becomes before tokenization: `text` itself, or the rendered chat. */
export function renderPromptText(tok: TextTokenizer, text: string, opts: RenderPromptOptions = {}): string {
  if (!opts.chat) {
    if (opts.system !== undefined) throw new TokenizerError("a system message needs chat mode (--system needs --chat)");
    return text;
  }
  const messages: ChatMessage[] = [];
  if (opts.system !== undefined) messages.push({ role: "system", content: opts.system });
  messages.push({ role: "user", content: text });
  return tok.applyChatTemplate(messages, { addGenerationPrompt: true, enableThinking: false });
}

/**
 * The token ids of a prompt as the CLI runs it. Plain: `encode(text)`. Chat: messages
 * [system?, user], generation prompt added, thinking disabled (as the seed's code does), encoded
 * without post-processor special tokens like transformers' `apply_chat_template(tokenize=True)`.
 */
export function renderPrompt(tok: TextTokenizer, text: string, opts: RenderPromptOptions = {}): number[] {
  const rendered = renderPromptText(tok, text, opts);
  return opts.chat ? tok.encode(rendered, { addSpecialTokens: false }) : tok.encode(rendered);
}
