"""Per-pixel masks: label painting and test-sky exclusion, numba kernels and their Dask wrappers."""
