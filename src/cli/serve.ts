// `jacsteer serve [DIR]`: the browser page (web/) on a local HTTP server, with the headers that make
// the page cross-origin isolated (COOP same-origin, COEP require-corp), which SharedArrayBuffer and so
// the page's Web Worker threads need. It serves the files below DIR and nothing else: a request for
// a path that leaves DIR (`..`, its %2e%2e spelling, backslashes, NUL, a symlink that points out) is
// answered 404, like a missing file. Listens on 127.0.0.1 unless --host says otherwise.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { existsSync, realpathSync, statSync, createReadStream } from "node:fs";
import { extname, join, resolve, sep } from "node:path";
import { intFlag, parseFlagsAndPositionals, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { log } from "./output.js";
import { packageRoot } from "../node/runtime.js";
import { coreCount } from "./threads.js";

export const SERVE_HELP = `jacsteer serve [DIR]: the browser page on a local web server

  DIR                      the page's folder (default: the package's web/, built by \`npm run build:web\`)
  --host HOST              address to listen on (default 127.0.0.1: this machine only)
  --port N                 port (default 8765; 0 picks a free one)
  --threads N              the page's default thread count, passed as ?threads=N (default: all cores;
                           the page caps it at the browser's navigator.hardwareConcurrency)
  --no-isolation           leave out the COOP/COEP headers: the page then runs on one thread (to try
                           the fallback a plain static host gives)
  --json                   print {"url", "dir", "host", "port", "isolated"} on stdout once listening
  --quiet                  no lines on stderr but errors

Open the printed URL, pick a Qwen3 checkpoint folder, type a prompt and run. The page reads the
checkpoint's files in the browser; nothing is uploaded (the server only hands out the page's files).
Ctrl-C stops the server.
`;

const OPTIONS: Options = {
  host: { type: "string" },
  port: { type: "string" },
  threads: { type: "string" },
  "no-isolation": { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".txt": "text/plain; charset=utf-8",
};

/**
 * The file below `root` (a real path) that URL path `urlPath` names, or null when it names nothing
 * there: not decodable, any `..` or `.` segment or backslash or NUL (also percent-encoded), not a
 * regular file, or a real path (symlinks resolved) outside root. "/" and directories give index.html.
 */
export function resolveServedPath(root: string, urlPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (!decoded.startsWith("/") || decoded.includes("\0") || decoded.includes("\\")) return null;
  const segments = decoded.split("/").slice(1);
  if (segments.some((s) => s === ".." || s === ".")) return null;
  let path = join(root, ...segments);
  try {
    if (statSync(path).isDirectory()) path = join(path, "index.html");
    const real = realpathSync(path);
    if (real !== root && !real.startsWith(root + sep)) return null;
    if (!statSync(real).isFile()) return null;
    return real;
  } catch {
    return null;
  }
}

export async function serve(argv: string[]): Promise<number> {
  const { values: f, positionals } = parseFlagsAndPositionals(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}" (serve takes one folder)`);
  const dirArg = positionals[0] ?? join(packageRoot(), "web");
  if (!existsSync(dirArg) || !statSync(dirArg).isDirectory()) throw new UsageError(`serve ${dirArg}: not a directory`);
  const root = realpathSync(resolve(dirArg));
  if (!existsSync(join(root, "index.html"))) throw new UsageError(`serve ${dirArg}: no index.html (the page's folder is web/ in the package)`);
  if (positionals[0] === undefined && !existsSync(join(root, "dist", "page.js"))) throw new UsageError(`${join(root, "dist", "page.js")}: missing; run \`npm run build:web\``);
  const host = (f.host as string | undefined) ?? "127.0.0.1";
  const port = intFlag(f, "port", 8765, 0)!;
  if (port > 65535) throw new UsageError(`--port ${port}: must be at most 65535`);
  const threads = intFlag(f, "threads", coreCount(), 1)!;
  const isolated = !f["no-isolation"];

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const headers: Record<string, string> = { "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache", "Cross-Origin-Resource-Policy": "same-origin" };
    if (isolated) {
      headers["Cross-Origin-Opener-Policy"] = "same-origin";
      headers["Cross-Origin-Embedder-Policy"] = "require-corp";
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { ...headers, Allow: "GET, HEAD", "Content-Type": "text/plain" });
      res.end("method not allowed\n");
      return;
    }
    // The request target is a path ("/a/b?q"); anything else (an absolute URL, "*") names no file here.
    const target = req.url ?? "";
    const file = target.startsWith("/") ? resolveServedPath(root, target.split(/[?#]/)[0]!) : null;
    if (!file) {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" });
      res.end("not found\n");
      return;
    }
    res.writeHead(200, { ...headers, "Content-Type": TYPES[extname(file).toLowerCase()] ?? "application/octet-stream", "Content-Length": String(statSync(file).size) });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", (e: NodeJS.ErrnoException) => fail(new UsageError(`--host ${host} --port ${port}: cannot listen (${e.code ?? e.message})`)));
    server.listen(port, host, ok);
  });
  const addr = server.address();
  const actualPort = typeof addr === "object" && addr ? addr.port : port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${actualPort}/?threads=${threads}`;
  if (f.json) process.stdout.write(JSON.stringify({ url, dir: root, host, port: actualPort, isolated }) + "\n");
  else process.stdout.write(`${url}\n`);
  log(`jacsteer: serving ${root} at ${url} (${isolated ? "cross-origin isolated: the page can use threads" : "--no-isolation: the page runs on one thread"}); Ctrl-C stops`);
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1") log(`jacsteer: --host ${host}: the page is reachable from other machines`);
  await new Promise<void>((done) => {
    // Stop now: an open browser tab keeps idle keep-alive connections that close() would wait for.
    const stop = () => {
      server.close(() => done());
      server.closeAllConnections();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  return 0;
}
