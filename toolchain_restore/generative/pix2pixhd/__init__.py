"""pix2pixHD (Wang et al., CVPR 2018): high-resolution image synthesis from semantic
layouts with a coarse-to-fine generator, multi-scale discriminators, feature matching and
instance-level feature embedding, on the project's generic trainer."""

from .maps import instance_average, instance_boundaries, one_hot_labels
from .model import PIX2PIXHD_KIND, Pix2PixHD, Pix2PixHDSettings, load_pix2pixhd, preset, save_pix2pixhd
from .networks import (FeatureEncoder, GlobalGenerator, MultiscaleDiscriminator, PatchDiscriminator,
                       Pix2PixHDGenerator, ResidualBlock)
from .training import Pix2PixHDTask, synthesis_metrics, train_pix2pixhd, trainer_defaults

__all__ = ["instance_average", "instance_boundaries", "one_hot_labels", "PIX2PIXHD_KIND", "Pix2PixHD",
           "Pix2PixHDSettings", "load_pix2pixhd", "preset", "save_pix2pixhd", "FeatureEncoder", "GlobalGenerator",
           "MultiscaleDiscriminator", "PatchDiscriminator", "Pix2PixHDGenerator", "ResidualBlock", "Pix2PixHDTask",
           "synthesis_metrics", "train_pix2pixhd", "trainer_defaults"]
