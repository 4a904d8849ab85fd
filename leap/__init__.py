"""LEAP: Layer-wise Exit-Aware Pretraining for Efficient Transformer Inference.

Reference implementation of the ACL 2026 paper: early-exit inference for embedding
models (:mod:`leap.early_exit`), the exit diagnostic and its metrics
(:mod:`leap.metrics`), and the command line (:mod:`leap.cli`).
"""

__version__ = "0.1.0"
