"""Building blocks of the two-stage DetNet-59 FPN detector (:mod:`detnet_trt.models.detnet_fpn`).

``boxes``: FPN anchors, Faster R-CNN box decoding and clipping (the ``+1`` pixel convention of
the public DetNet_pytorch code); ``nms``: greedy NMS with the ONNX ``NonMaxSuppression``
semantics and its export; ``roi_align``: ONNX ``RoiAlign`` in PyTorch and the pyramid RoIAlign
that reproduces DetNet_pytorch's CUDA kernel through it. Only torch and ``core`` are imported.
"""
