"""The contract layer every stage builds on (stdlib and NumPy only; ``onnx`` lazily, in
:mod:`.onnx_meta`): errors, model metadata and tensor names, post-processing options, the ONNX
metadata read/write, the engine sidecar, atomic file writes and hashes, image files.
"""
