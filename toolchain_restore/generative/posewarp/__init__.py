"""PoseWarp (Balakrishnan et al., CVPR 2018): synthesizing images of humans in unseen poses
with a modular warp-based model (source segmentation, per-part spatial transforms,
foreground and background synthesis), its U-Net baseline, the official per-video data
layout and procedural figure videos, on the project's generic trainer."""

from .data import FolderPairs, MatFileError, PosePair, ProceduralPairs, VideoFolder, pair_source, read_video_info
from .figures import ProceduralVideo, render_figure, sample_pose
from .model import POSEWARP_KIND, PoseWarp, PoseWarpSettings, load_posewarp, preset, save_posewarp
from .pose import (JOINT_NAMES, LIMBS, fit_transform, limb_log_prior, part_transforms, pose_heatmaps,
                   warp_parts)
from .training import PoseWarpTask, train_posewarp, trainer_defaults

__all__ = ["FolderPairs", "MatFileError", "PosePair", "ProceduralPairs", "VideoFolder", "pair_source",
           "read_video_info", "ProceduralVideo", "render_figure", "sample_pose", "POSEWARP_KIND", "PoseWarp",
           "PoseWarpSettings", "load_posewarp", "preset", "save_posewarp", "JOINT_NAMES", "LIMBS", "fit_transform",
           "limb_log_prior", "part_transforms", "pose_heatmaps", "warp_parts", "PoseWarpTask", "train_posewarp",
           "trainer_defaults"]
