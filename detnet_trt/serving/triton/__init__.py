"""Serving through NVIDIA Triton Inference Server.

- :mod:`.repository`: ``export-triton``, a model repository for a stock Triton (network +
  Python-backend post-processing + ensemble);
- :mod:`.server`: ``serve``, the package's backends inside PyTriton's ``tritonserver``;
- :mod:`.client`: ``client``, tritonclient-based, for either server;
- :mod:`.protocol`: the request/response contract both servers speak.

PyTriton and tritonclient are optional (``pip install 'detnet-trt[triton]'``) and imported only
when a server or client starts.
"""

from .protocol import OUTPUTS, pack_detections, unpack_detections
from .repository import TritonRepoOptions, export_triton, read_model

__all__ = [
    "OUTPUTS", "TritonRepoOptions", "export_triton", "pack_detections", "read_model", "unpack_detections",
]
