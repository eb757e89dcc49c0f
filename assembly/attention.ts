// placeholder: kernels for attention are written in a later commit
