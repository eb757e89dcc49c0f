// The HTML report: platform-neutral page and SVG generation (src/cli/report.ts reads files and writes it).
export { renderReport, spectrumLabel, compareSpectra, type SpectrumComparison, type ReportInput, type RenderedReport, type SpectrumInput, type CosinePair, type VectorSetSelection } from "./report.js";
export { parseAbResult, type AbInput } from "./ab-input.js";
export { linePlot, type LinePlotOptions, type PlotResult, type Series, type Point } from "./plot.js";
export { heatmap, type HeatmapOptions, type HeatmapResult } from "./heatmap.js";
export { linearScale, logScale, niceTicks, integerTicks, logTicks, formatNumber, type Scale, type Ticks } from "./scale.js";
export { escapeXml } from "./svg.js";
export { parseLinearity, LINEARITY_FORMAT, type LinearityFile, type LinearityInput } from "./linearity.js";
