// The README's code blocks, for the tests that run them (test/package/consumer.test.ts: the Node
// example; test/web/readme-example.test.ts: the browser one), so the examples cannot rot.
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** The code blocks of README.md's section `title`, with their language. */
export function readmeBlocks(title: string): { lang: string; code: string }[] {
  const readme = readFileSync(join(process.cwd(), "README.md"), "utf8");
  const start = readme.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README.md has no section "## ${title}"`);
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, code: m[2]! }));
}

/** The one block of language `lang` in section `title` (an error when there are none or several). */
export function readmeBlock(title: string, lang: string): string {
  const found = readmeBlocks(title).filter((b) => b.lang === lang);
  if (found.length !== 1) throw new Error(`README.md section "${title}" has ${found.length} \`${lang}\` blocks, expected one`);
  return found[0]!.code;
}
