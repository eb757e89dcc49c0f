// Tensors that live in wasm memory, and the graph nodes that record how they were made.
//
// The design follows JAX's "vjp = linearize + transpose": every primitive has a forward kernel and two
// linear maps at the saved primal point, its JVP (tangent in -> tangent out) and its VJP (cotangent in ->
// cotangent out), which are transposes of each other. A recorded VJP op is therefore differentiable with
// respect to its cotangent (its own VJP is the JVP kernel and vice versa), which is all the seed's double
// VJP trick needs. Derivatives with respect to the saved primal point (true second derivatives through
// nonlinear ops) are not implemented, and asking for one throws NotDifferentiableError.
import type { Runtime } from "../runtime/runtime.js";

export class NotDifferentiableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotDifferentiableError";
  }
}

/** Per-runtime autodiff state: whether ops record graph nodes (torch's grad mode). */
export class AutodiffContext {
  gradEnabled = true;
  private nextId = 1;
  constructor(readonly rt: Runtime) {}

  newId(): number {
    return this.nextId++;
  }

  /** Run fn with recording switched on or off, restoring the previous mode afterwards. */
  withGrad<T>(enabled: boolean, fn: () => T): T {
    const prev = this.gradEnabled;
    this.gradEnabled = enabled;
    try {
      return fn();
    } finally {
      this.gradEnabled = prev;
    }
  }

  noGrad<T>(fn: () => T): T {
    return this.withGrad(false, fn);
  }
}

export type Cotangents = (Tensor | null)[];

/**
 * A recorded application of a primitive. `vjp` maps output cotangents to input cotangents (null where no
 * gradient flows or where `need[i]` is false); `jvp` maps input tangents to output tangents. Both are
 * written with differentiable ops, so under createGraph they are recorded too.
 */
export interface Node {
  readonly name: string;
  readonly inputs: Tensor[];
  outputs: Tensor[];
  vjp(gradOutputs: Cotangents, need: boolean[]): Cotangents;
  jvp(tangentInputs: Cotangents): Cotangents;
}

export class Tensor {
  readonly id: number;
  node: Node | null = null;
  /** Which output of `node` this tensor is. */
  outputIndex = 0;

  constructor(
    readonly ctx: AutodiffContext,
    /** Byte offset of the first f32 in wasm memory. */
    readonly ptr: number,
    readonly shape: readonly number[],
    public requiresGrad = false,
  ) {
    this.id = ctx.newId();
  }

  get size(): number {
    return shapeSize(this.shape);
  }

  get rt(): Runtime {
    return this.ctx.rt;
  }

  /** A live view on the data (invalidated by a later allocation that grows the memory). */
  view(): Float32Array {
    return this.ctx.rt.heap.f32(this.ptr, this.size);
  }

  /** A copy of the data in ordinary JS memory. */
  toArray(): Float32Array {
    return this.view().slice();
  }

  /** The same data, cut off from the graph (like torch's detach()). */
  detach(): Tensor {
    return new Tensor(this.ctx, this.ptr, this.shape, false);
  }

  toString(): string {
    return `Tensor#${this.id}[${this.shape.join(",")}]${this.node ? ` <- ${this.node.name}` : ""}`;
  }
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** An uninitialised tensor of the given shape (an output buffer for a kernel). */
export function empty(ctx: AutodiffContext, shape: readonly number[]): Tensor {
  return new Tensor(ctx, ctx.rt.heap.allocF32(shapeSize(shape)), shape);
}

export function zeros(ctx: AutodiffContext, shape: readonly number[], requiresGrad = false): Tensor {
  const t = empty(ctx, shape);
  ctx.rt.k.fill(t.ptr, t.size, 0);
  t.requiresGrad = requiresGrad;
  return t;
}

export function fromArray(ctx: AutodiffContext, data: ArrayLike<number>, shape: readonly number[], requiresGrad = false): Tensor {
  if (data.length !== shapeSize(shape)) throw new Error(`fromArray: ${data.length} values for shape [${shape.join(",")}]`);
  const t = empty(ctx, shape);
  t.view().set(data);
  t.requiresGrad = requiresGrad;
  return t;
}

/**
 * Attach outputs to a new node when recording is on and any input needs a gradient.
 * Outputs otherwise stay constants (requiresGrad false), exactly as torch does.
 */
export function record(ctx: AutodiffContext, name: string, inputs: Tensor[], outputs: Tensor[], rules: Pick<Node, "vjp" | "jvp">): void {
  if (!ctx.gradEnabled || !inputs.some((t) => t.requiresGrad)) return;
  const node: Node = { name, inputs, outputs, vjp: rules.vjp, jvp: rules.jvp };
  outputs.forEach((o, i) => {
    o.node = node;
    o.outputIndex = i;
    o.requiresGrad = true;
  });
}
