// placeholder: kernels for silu are written in a later commit
