import { enableRelaxedSimd } from "../src/node/relaxed-simd.js";
enableRelaxedSimd();
