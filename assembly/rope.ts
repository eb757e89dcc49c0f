// placeholder: kernels for rope are written in a later commit
