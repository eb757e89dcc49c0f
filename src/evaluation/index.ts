// Question datasets (one reader for caa and eval-ab), prompt construction, logit differences, summaries.
export { answerLetter, balanceItems, orient, parseDataset, selectEvals, splitItems, swapChoices, type Dataset, type DatasetItem, type ItemKind, type Split } from "./dataset.js";
export { buildItemPrompt, defaultAnswerPrefix, describeToken, doublesAnswer, singleDifference, unescapeFlagText, type ItemPrompt, type PromptStyle } from "./prompt.js";
export { selectDatasetItems, type DatasetChoice, type DatasetInput } from "./select.js";
export { evaluateAb, evaluateAbBatched, leastSquares, summarizeAb, toAbPrompt, MIN_FIT_R2, MIN_FIT_SCALES, type AbLinearity, type AbOptions, type AbPrompt, type AbRow, type AbSummary, type AbSummaryRow, type AbVector } from "./ab.js";
