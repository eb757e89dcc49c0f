// Reverse mode (`grad`, with the meaning of torch.autograd.grad) and forward mode (`jvp`) over the
// graph that ops record. Gradients flow only along paths that reach the requested inputs, so a node's
// rule is asked only for the input cotangents that matter (tinygrad's habit; it is also what lets the
// double VJP trick avoid true second derivatives).
import { NotDifferentiableError, sameShape, type Node, type Tensor, type Cotangents } from "./tensor.js";
import { add } from "./ops.js";

export interface GradOptions {
  /** Record the backward computation so its result can be differentiated again. */
  createGraph?: boolean;
  /** Return null for an input that no output depends on, instead of throwing. */
  allowUnused?: boolean;
}

/** Nodes reachable from `outputs`, inputs before users (iterative DFS: graphs are deep). */
function topologicalNodes(outputs: Tensor[]): Node[] {
  const order: Node[] = [];
  const seen = new Set<Node>();
  const stack: { node: Node; next: number }[] = [];
  for (const o of outputs) {
    if (!o.node || seen.has(o.node)) continue;
    seen.add(o.node);
    stack.push({ node: o.node, next: 0 });
    while (stack.length) {
      const top = stack[stack.length - 1];
      if (top.next < top.node.inputs.length) {
        const child = top.node.inputs[top.next++].node;
        if (child && !seen.has(child)) {
          seen.add(child);
          stack.push({ node: child, next: 0 });
        }
      } else {
        order.push(top.node);
        stack.pop();
      }
    }
  }
  return order;
}

/** For each tensor in the graph of `outputs`: does it depend on any of `inputs`? */
function dependsOn(order: Node[], inputs: Tensor[]): (t: Tensor) => boolean {
  const leaves = new Set(inputs);
  const nodeReaches = new Set<Node>();
  const reaches = (t: Tensor) => leaves.has(t) || (t.node !== null && nodeReaches.has(t.node));
  for (const node of order) if (node.inputs.some(reaches)) nodeReaches.add(node);
  return reaches;
}

function accumulate(map: Map<Tensor, Tensor>, t: Tensor, g: Tensor): void {
  if (!sameShape(g.shape, t.shape)) {
    throw new Error(`internal: gradient of shape [${g.shape.join(",")}] for tensor of shape [${t.shape.join(",")}]`);
  }
  const prev = map.get(t);
  map.set(t, prev ? add(prev, g) : g);
}

/**
 * Sum over outputs of (d output / d input)^T gradOutput, for each input: torch.autograd.grad.
 * With createGraph the computation is recorded and the result can be differentiated again
 * (with respect to gradOutputs, which is what the seed's double VJP does).
 */
export function grad(outputs: Tensor | Tensor[], inputs: Tensor | Tensor[], gradOutputs: Tensor | Tensor[], opts: GradOptions = {}): (Tensor | null)[] {
  const outs = Array.isArray(outputs) ? outputs : [outputs];
  const ins = Array.isArray(inputs) ? inputs : [inputs];
  const gOuts = Array.isArray(gradOutputs) ? gradOutputs : [gradOutputs];
  if (outs.length !== gOuts.length) throw new Error(`grad: ${outs.length} outputs but ${gOuts.length} gradOutputs`);
  outs.forEach((o, i) => {
    if (!sameShape(o.shape, gOuts[i].shape)) {
      throw new Error(`grad: gradOutputs[${i}] has shape [${gOuts[i].shape.join(",")}], output has [${o.shape.join(",")}]`);
    }
    if (!o.requiresGrad) throw new NotDifferentiableError(`grad: outputs[${i}] does not require grad and has no graph`);
  });
  ins.forEach((t, i) => {
    if (!t.requiresGrad) throw new NotDifferentiableError(`grad: inputs[${i}] does not require grad`);
  });
  const ctx = outs[0].ctx;
  const order = topologicalNodes(outs);
  const reaches = dependsOn(order, ins);
  const leaves = new Set(ins);

  return ctx.withGrad(!!opts.createGraph, () => {
    const grads = new Map<Tensor, Tensor>();
    outs.forEach((o, i) => accumulate(grads, o, gOuts[i]));
    for (let n = order.length - 1; n >= 0; n--) {
      const node = order[n];
      if (!node.inputs.some(reaches)) continue;
      const gNode: Cotangents = node.outputs.map((o) => (leaves.has(o) ? null : grads.get(o) ?? null));
      // An output that is itself a requested input keeps its gradient; it does not flow further down.
      if (gNode.every((g) => g === null)) continue;
      const need = node.inputs.map(reaches);
      const gIn = node.vjp(gNode, need);
      node.inputs.forEach((t, i) => {
        const g = gIn[i];
        if (g && need[i]) accumulate(grads, t, g);
      });
      // Free the map entries of this node's outputs: they will not be read again.
      for (const o of node.outputs) if (!leaves.has(o)) grads.delete(o);
    }
    return ins.map((t, i) => {
      const g = grads.get(t) ?? null;
      if (!g && !opts.allowUnused) {
        throw new Error(`grad: inputs[${i}] (${t}) was not used to compute the outputs (pass allowUnused to get null)`);
      }
      return g;
    });
  });
}

/**
 * Forward mode over an already-recorded graph: the directional derivative of `outputs` when `inputs`
 * move along `tangents` (torch.func.jvp). Returns one tangent per output (null if it does not depend on
 * the inputs).
 */
export function jvpGraph(outputs: Tensor | Tensor[], inputs: Tensor | Tensor[], tangents: Tensor | Tensor[], opts: { createGraph?: boolean } = {}): (Tensor | null)[] {
  const outs = Array.isArray(outputs) ? outputs : [outputs];
  const ins = Array.isArray(inputs) ? inputs : [inputs];
  const tIns = Array.isArray(tangents) ? tangents : [tangents];
  if (ins.length !== tIns.length) throw new Error(`jvp: ${ins.length} inputs but ${tIns.length} tangents`);
  ins.forEach((t, i) => {
    if (!sameShape(t.shape, tIns[i].shape)) throw new Error(`jvp: tangents[${i}] has shape [${tIns[i].shape.join(",")}], input has [${t.shape.join(",")}]`);
  });
  const ctx = outs[0].ctx;
  const order = topologicalNodes(outs);
  const reaches = dependsOn(order, ins);
  return ctx.withGrad(!!opts.createGraph, () => {
    const tan = new Map<Tensor, Tensor>();
    ins.forEach((t, i) => tan.set(t, tIns[i]));
    for (const node of order) {
      if (!node.inputs.some(reaches)) continue;
      const tNode = node.inputs.map((t) => tan.get(t) ?? null);
      const tOut = node.jvp(tNode);
      node.outputs.forEach((o, i) => {
        const t = tOut[i];
        if (t && !tan.has(o)) tan.set(o, t);
      });
    }
    return outs.map((o) => tan.get(o) ?? null);
  });
}

/** J v for the function f at x: traces f once and pushes the tangent forward. Returns [f(x), J v]. */
export function jvp(f: (x: Tensor) => Tensor, x: Tensor, v: Tensor): [Tensor, Tensor] {
  const leaf = x.requiresGrad ? x : markLeaf(x);
  const y = x.ctx.withGrad(true, () => f(leaf));
  const [t] = jvpGraph(y, leaf, v);
  if (!t) throw new Error("jvp: the output does not depend on the input");
  return [y, t];
}

function markLeaf(x: Tensor): Tensor {
  const leaf = x.detach();
  leaf.requiresGrad = true;
  return leaf;
}
