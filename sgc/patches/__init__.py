"""Patches: the patch plan and its splits, the split report, and the leak audit.

- :mod:`sgc.patches.plan`: the patch grid of each field, the split, dropping rules, train normalisation.
- :mod:`sgc.patches.planfile`: :class:`~sgc.patches.planfile.PatchPlan` and its Zarr file.
- :mod:`sgc.patches.report`: patch, object and class-pixel counts per split, and figures.
- :mod:`sgc.patches.audit`: an independent check that no train or validation pixel lies on held-out sky.
"""
