// placeholder: kernels for matmul are written in a later commit
