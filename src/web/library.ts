// jacsteer in a browser tab as one ES module, web/dist/jacsteer.js (`npm run build:web`): the
// platform-neutral library (src/index.ts: powerIter, melbo, caa, evalAb, generate, encodeVectorFile,
// ...) and what a page needs to call it in a few lines (README "Library"): picked files as an opened
// checkpoint, the kernels fetched from beside the bundle, matrix products on Web Worker threads.
export * from "../index.js";
export { openCheckpointFiles, openPickedCheckpoint, blobByteSource, type OpenedFiles, type PickedFile, type PickedCheckpoint } from "./file-checkpoint.js";
export { createWebRuntime, type WebRuntimeOptions } from "./runtime.js";
export { createWebGemm, webThreadLimit, webThreads } from "./worker-gemm.js";
