"""sgc: per-pixel star / galaxy / sky segmentation of SDSS imaging."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sgc")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
