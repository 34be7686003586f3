"""The segmentation model: a five-band U-Net and its training loss."""

from sgc.model.losses import IGNORE_INDEX, SegmentationLoss, build_loss, class_weights
from sgc.model.unet import UNet, count_parameters, expected_parameters

__all__ = [
    "IGNORE_INDEX",
    "SegmentationLoss",
    "UNet",
    "build_loss",
    "class_weights",
    "count_parameters",
    "expected_parameters",
]
