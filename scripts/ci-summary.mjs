// Prints CI's closing line "N passed, N failed[, N skipped]" from vitest's JSON report.
// Exits non-zero when the report is missing or any test failed, so a crash cannot look green.
import { readFileSync } from "node:fs";

const file = process.argv[2] ?? "test-results/vitest.json";
let report;
try {
  report = JSON.parse(readFileSync(file, "utf8"));
} catch (e) {
  console.log(`ci-summary: no vitest report at ${file} (${e.message})`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}
const passed = report.numPassedTests ?? 0;
const failed = report.numFailedTests ?? 0;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
// A test file that failed to load has no test results of its own: count it as one failure.
const brokenSuites = (report.testResults ?? []).filter((r) => r.status === "failed" && (r.assertionResults ?? []).length === 0).length;
console.log(`${passed} passed, ${failed + brokenSuites} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed + brokenSuites > 0 ? 1 : 0);
