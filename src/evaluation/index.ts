// A/B evaluation of steering vectors: datasets, prompt construction, logit differences, summaries.
export { answerLetter, parseAbDataset, type AbQuestion } from "./dataset.js";
export { buildAbPrompt, unescapeFlagText, DEFAULT_ANSWER_PREFIX, type AbPrompt, type AbPromptOptions } from "./prompt.js";
export { evaluateAb, leastSquares, summarizeAb, type AbLinearity, type AbRow, type AbSummary, type AbSummaryRow, type AbVector } from "./ab.js";
