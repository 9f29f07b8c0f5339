"""The single-large-CNN baselines of RL-Restore's comparison (DnCNN, VDSR), trained on the
same moderate data stream as the agent by the project's generic trainer."""

from .cnn import BASELINE_ARCHITECTURES, BASELINE_KIND, VDSR, DnCNN, conv_macs_per_pixel, load_baseline, save_baseline

__all__ = ["BASELINE_ARCHITECTURES", "BASELINE_KIND", "DnCNN", "VDSR", "conv_macs_per_pixel", "load_baseline", "save_baseline"]
