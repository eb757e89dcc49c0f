// The memory plan: one WebAssembly.Memory (shared, so worker threads compute on the same bytes),
// carved by a bump allocator that the host owns. Kernels never allocate; they receive offsets.
//
// Lifetimes are nested: weights are allocated first and live for the session; each Jacobian
// product runs inside `scope()`, which releases everything allocated during it. That matches the
// workload (a product builds a graph, uses it, drops it) and costs nothing per allocation.

const PAGE = 65536;
/** wasm32 with a shared memory must declare a maximum; 65536 pages is the whole 4 GiB address space. */
export const MAX_PAGES = 65536;
/** Every buffer starts on a 64-byte boundary: whole cache lines, aligned v128 loads. */
export const ALIGN = 64;

export class OutOfWasmMemoryError extends Error {
  constructor(requestedBytes: number, usedBytes: number) {
    super(
      `out of WebAssembly memory: ${fmtBytes(requestedBytes)} requested with ${fmtBytes(usedBytes)} in use; ` +
        `wasm32 addresses at most 4 GiB (model too large for memory?)`,
    );
    this.name = "OutOfWasmMemoryError";
  }
}

function fmtBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  private top: number;
  private readonly base: number;
  private peak = 0;

  constructor(memory: WebAssembly.Memory, base: number) {
    this.memory = memory;
    this.base = alignUp(base, ALIGN);
    this.top = this.base;
  }

  /** Reserve `bytes` (rounded up to ALIGN); grows the memory as needed. Contents are unspecified. */
  alloc(bytes: number): number {
    const ptr = this.top;
    const end = ptr + alignUp(Math.max(bytes, 0), ALIGN);
    if (end > MAX_PAGES * PAGE) throw new OutOfWasmMemoryError(bytes, this.top - this.base);
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      // Grow geometrically (at least 1/8 more) so a long run does not grow page by page.
      const wantPages = Math.ceil(end / PAGE);
      const havePages = have / PAGE;
      const pages = Math.min(MAX_PAGES, Math.max(wantPages, havePages + Math.ceil(havePages / 8)));
      try {
        this.memory.grow(pages - havePages);
      } catch {
        throw new OutOfWasmMemoryError(bytes, this.top - this.base);
      }
    }
    this.top = end;
    if (end - this.base > this.peak) this.peak = end - this.base;
    return ptr;
  }

  /** Allocate `n` f32 values. */
  allocF32(n: number): number {
    return this.alloc(n * 4);
  }

  /** A position to return to with `release`. */
  mark(): number {
    return this.top;
  }

  /** Free everything allocated after `mark` was taken. */
  release(mark: number): void {
    if (mark < this.base || mark > this.top) throw new Error(`heap release to ${mark} outside [${this.base}, ${this.top}]`);
    this.top = mark;
  }

  /** Run `fn`; everything it allocates is released afterwards (also on throw). */
  scope<T>(fn: () => T): T {
    const m = this.mark();
    try {
      return fn();
    } finally {
      this.release(m);
    }
  }

  /** A Float32Array view on [ptr, ptr + 4n). Views are cheap; make a fresh one after any allocation (grow replaces the buffer). */
  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, n);
  }

  /** Bytes in use above the module's static data, and the most ever in use. */
  get usedBytes(): number {
    return this.top - this.base;
  }
  get peakBytes(): number {
    return this.peak;
  }
}

export function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

/** A shared memory when the platform allows it (Node, cross-origin-isolated pages), else a plain one. */
export function createWasmMemory(initialPages = 16): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: initialPages, maximum: MAX_PAGES, shared: true });
}
