"""Where clean images come from: the embedded default, any folder, patches at three scales."""

from .images import EMBEDDED_SPLIT, IMAGE_EXTENSIONS, ImageReadError, ImageSet, embedded_images, image_set, read_image
from .patches import SCALES, Patch, PatchSampler

__all__ = [
    "EMBEDDED_SPLIT",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "ImageSet",
    "embedded_images",
    "image_set",
    "read_image",
    "SCALES",
    "Patch",
    "PatchSampler",
]
