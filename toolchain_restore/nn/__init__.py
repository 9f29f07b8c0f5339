"""Layers shared by every model: DCNet's decoupled convolutions, and their training aids."""

from .decoupled import (ANGULARS, BOUNDED, MAGNITUDES, DecoupledConv2d, conv2d, orthogonality_penalty, parse_conv_kind,
                        project_filters)
from .training_aids import DCNetTrainingAids

__all__ = ["ANGULARS", "BOUNDED", "MAGNITUDES", "DecoupledConv2d", "conv2d", "parse_conv_kind", "project_filters",
           "orthogonality_penalty", "DCNetTrainingAids"]
