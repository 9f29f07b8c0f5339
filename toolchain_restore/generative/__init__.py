"""The data layer shared by the image-synthesis modules (pix2pixHD, SIMS): procedural street
scenes (label map, instance map, photo-like image), a reader of real data (pix2pixHD's folder
layout, Cityscapes as downloaded, ADE20K SceneParsing), and the segmentation network of the
paper's evaluation protocol."""

from .folder_layouts import (ADE20K_CLASSES, CITYSCAPES_IGNORE, CITYSCAPES_TRAIN_CLASSES, CITYSCAPES_TRAIN_IDS, LAYOUTS,
                             detect_layout)
from .layout import (CITYSCAPES_SUFFIXES, LayoutFolder, LayoutSample, check_divisible, crop_to_multiple,
                     pad_to_multiple, read_integer_map, resize_to_width, sample_key, write_layout)
from .segmentation import (SEGMENTER_KIND, SegmentationNet, SegmentationSettings, SegmentationTask, load_segmenter,
                           save_segmenter, scenes_to_tensors, segmentation_agreement, segmentation_scores,
                           train_segmenter)
from .scenes import (MIN_SCENE_SIZE, SCENE_CLASSES, SCENE_PALETTE, STUFF_CLASSES, TEST_SEED_START, THING_CLASSES,
                     TRAIN_SEED_START, Scene, colorize_labels, make_scene, make_scenes, procedural_split)

__all__ = ["SCENE_CLASSES", "THING_CLASSES", "STUFF_CLASSES", "SCENE_PALETTE", "MIN_SCENE_SIZE", "TRAIN_SEED_START",
           "TEST_SEED_START", "Scene", "make_scene", "make_scenes", "procedural_split", "colorize_labels",
           "LayoutFolder", "LayoutSample", "pad_to_multiple", "check_divisible", "write_layout", "read_integer_map",
           "sample_key", "CITYSCAPES_SUFFIXES", "resize_to_width", "crop_to_multiple", "LAYOUTS", "detect_layout",
           "CITYSCAPES_TRAIN_IDS", "CITYSCAPES_TRAIN_CLASSES", "CITYSCAPES_IGNORE", "ADE20K_CLASSES",
           "SegmentationNet", "segmentation_scores", "SegmentationSettings", "SegmentationTask", "train_segmenter",
           "save_segmenter", "load_segmenter", "segmentation_agreement", "scenes_to_tensors", "SEGMENTER_KIND"]
