"""Training support: checkpoints, process groups and mixed precision, and metrics.

- :mod:`sgc.train.checkpoint`: atomic checkpoint files read with ``weights_only`` loading, and RNG state.
- :mod:`sgc.train.distributed`: torchrun process groups, reductions across ranks, autocast dtype choice.
- :mod:`sgc.train.metrics`: the per-pixel confusion matrix and the per-epoch CSV / TensorBoard log.
"""
