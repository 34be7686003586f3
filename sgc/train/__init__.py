"""Training: the loop, checkpoints, process groups and mixed precision, and the run log.

- :mod:`sgc.train.loop`: ``sgc train``, one process or many under torchrun (DDP).
- :mod:`sgc.train.checkpoint`: atomic, self-contained checkpoint files read with ``weights_only`` loading.
- :mod:`sgc.train.distributed`: torchrun process groups, reductions across ranks, autocast dtype choice.
- :mod:`sgc.train.log`: the per-epoch CSV / TensorBoard log.
"""
