"""Patches: the patch plan and its splits, the leak audit, and the streaming loader.

- :mod:`sgc.patches.plan`: the patch grid of each field, the split, dropping rules, train normalisation.
- :mod:`sgc.patches.planfile`: :class:`~sgc.patches.planfile.PatchPlan` and its Zarr file.
- :mod:`sgc.patches.audit`: an independent check that no train or validation pixel lies on held-out sky.
- :mod:`sgc.patches.stream`: patches streamed from the store into PyTorch (with :mod:`~sgc.patches.chunks`
  and :mod:`~sgc.patches.gather`).
"""
