// AdamW with the AMSGrad variant, in float64, with the update rule of torch.optim.AdamW (torch 1.13
// through 2.x, amsgrad=True, maximize=False):
//
//   x      <- x * (1 - lr * weightDecay)                  (decoupled weight decay)
//   m      <- beta1 m + (1 - beta1) g
//   v      <- beta2 v + (1 - beta2) g^2
//   vmax   <- max(vmax, v)
//   x      <- x - (lr / (1 - beta1^t)) * m / (sqrt(vmax) / sqrt(1 - beta2^t) + eps)
//
// The MELBO paper's code uses it with lr 1e-3, betas (0.9, 0.98), weight decay 0, eps 1e-8 (torch's
// default) to MINIMISE minus its loss; trainMelbo does the same.

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const MELBO_ADAMW: AdamWOptions = { lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 0 };

export class AmsgradAdamW {
  private readonly m: Float64Array;
  private readonly v: Float64Array;
  private readonly vmax: Float64Array;
  private t = 0;

  constructor(
    readonly dim: number,
    readonly opts: AdamWOptions,
  ) {
    this.m = new Float64Array(dim);
    this.v = new Float64Array(dim);
    this.vmax = new Float64Array(dim);
  }

  /** One step on x (in place) with gradient g of the function being minimised. */
  step(x: Float64Array, g: ArrayLike<number>): void {
    const { lr, beta1, beta2, eps, weightDecay } = this.opts;
    this.t++;
    const bc1 = 1 - Math.pow(beta1, this.t);
    const bc2 = 1 - Math.pow(beta2, this.t);
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (let i = 0; i < this.dim; i++) {
      x[i] *= 1 - lr * weightDecay;
      this.m[i] = beta1 * this.m[i] + (1 - beta1) * g[i];
      this.v[i] = beta2 * this.v[i] + (1 - beta2) * g[i] * g[i];
      if (this.v[i] > this.vmax[i]) this.vmax[i] = this.v[i];
      x[i] -= (stepSize * this.m[i]) / (Math.sqrt(this.vmax[i]) / sqrtBc2 + eps);
    }
  }
}
