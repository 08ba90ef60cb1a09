"""Running a model: letterbox (:mod:`.letterbox`), pure NMS ops (:mod:`.nms`), post-processing
(:mod:`.postprocess`), :class:`~.detector.Detector`, and the backends behind one interface
(:mod:`.backends`: PyTorch, ONNX Runtime, TensorRT).
"""
