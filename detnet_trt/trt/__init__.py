"""What the engine build and the runtime share about TensorRT: the one version-compatibility point
(:mod:`.compat`), the CUDA layer over pycuda (:mod:`.cuda`) and plugin libraries (:mod:`.plugins`).

No module here imports ``tensorrt`` or ``pycuda`` at import time.
"""
