"""Scaling out: NVIDIA Triton Inference Server (:mod:`.triton`).
"""
