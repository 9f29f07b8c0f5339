"""SIMS as one module (synthesis network, alignment network, ordering classifier), its
settings, and its weight files."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...config import with_changes
from ...serialization import load_weights, read_settings, save_weights
from ..datasets import SceneDataSettings
from .bank import SegmentSettings
from .networks import AlignmentNet, OrderingNet, SynthesisNet

__all__ = ["SimsSettings", "Sims", "save_sims", "load_sims", "SIMS_KIND", "preset", "learns_ordering"]

SIMS_KIND = "toolchain-restore/sims"


@dataclass
class SimsSettings(SegmentSettings, SceneDataSettings):
    """SIMS's data, memory bank, retrieval, alignment, ordering, canvas simulation, synthesis
    network and losses. ``preset('cpu')`` is sized for 128x256 procedural scenes on a CPU;
    ``preset('paper')`` documents the GPU settings of the reference (Cityscapes 1024x2048)."""

    bank: str | None = None
    """Memory bank folder (build-bank) the training canvases and alignment pairs draw partners from; None: cut one in memory from the training set."""
    retrieval: bool = True
    """Synthesise from canvases of retrieved segments; False: from the label map alone (the ablation: empty canvases)."""
    top_k: int = 10
    """Candidates retrieved per query segment (official: 10); alignment keeps the best-fitting one."""
    shape_weight: float = 1.0
    """Retrieval score weight of the shape IoU."""
    context_weight: float = 0.5
    """Retrieval score weight of the context IoU."""
    box_weight: float = 0.5
    """Retrieval score weight of the IoU of the boxes in image-relative coordinates (position and size)."""
    alignment: Literal["stn", "box"] = "stn"
    """'stn': the spatial transformer refines the box fit; 'box': the box fit alone (the fallback)."""
    align_size: int = 32
    """Side of the alignment network's crop frame."""
    align_margin: float = 0.25
    """The frame is the query box grown by this fraction of its size on every side."""
    align_width: int = 16
    """Channels of the alignment network's first layer."""
    align_refine_steps: int = 0
    """Extra steps of gradient descent on each affine map at synthesis time (mask agreement); 0: the network's map alone."""
    align_batch: int = 8
    """(query, segment) pairs per training step for the alignment network."""
    align_perturb: float = 0.15
    """Half of the pairs are the query's own segment moved by a random affine of about this size (frame units)."""
    order_width: int = 16
    """Channels of the ordering classifier's first layer."""
    order_batch: int = 16
    """Overlapping pairs per training step for the ordering classifier (procedural data only: it needs the true depth order)."""
    colour_transfer: float = 0.3
    """Training canvases: probability per segment of colour transfer from the partner segment."""
    erase_width: int = 2
    """Training canvases: pixels erased along the boundaries of each pasted region."""
    move: float = 0.3
    """Training canvases: probability per segment of a random small rotation and translation (void where it left)."""
    max_rotation: float = 5.0
    """Training canvases: largest random rotation, degrees."""
    max_shift: float = 0.08
    """Training canvases: largest random translation, fraction of the segment's box."""
    ngf: int = 16
    """Channels of the synthesis network's finest level."""
    levels: int = 4
    """Stride-2 levels of the synthesis network (sizes must be multiples of 2^levels)."""
    max_channels: int = 128
    """Cap on the synthesis network's channels."""
    lambda_l1: float = 1.0
    """Weight of the L1 loss to the real image."""
    lambda_gradient: float = 1.0
    """Weight of the multi-scale image-gradient L1 loss (detail without downloaded weights)."""
    gradient_scales: int = 3
    """Scales of the gradient loss (each halves the resolution)."""
    lambda_semantic: float = 0.1
    """Weight of the semantic cross-entropy (reference: 10, against its perceptual loss's scale)."""
    vgg_weights: str | None = None
    """torchvision VGG-19 weights (.pth or .safetensors) for the class-masked perceptual loss; None: off (nothing is downloaded)."""
    lambda_vgg: float = 1.0
    """Weight of the class-masked VGG loss when ``vgg_weights`` is given."""
    lambda_align: float = 1.0
    """Weight of the alignment network's loss (masked L1 against the real image + mask L1)."""
    lambda_order: float = 0.1
    """Weight of the ordering classifier's cross-entropy."""
    batch_size: int = 1
    """Layouts per synthesis step."""
    flip: bool = True
    """Mirror training layouts, canvases and images left-right at random."""

    def simulation(self):
        from .canvas import CanvasSimulation

        return CanvasSimulation(self.colour_transfer, self.erase_width, self.move, self.max_rotation, self.max_shift)

    @property
    def weights(self) -> tuple[float, float, float]:
        return (self.shape_weight, self.context_weight, self.box_weight)


def preset(name: Literal["cpu", "paper"], **changes) -> SimsSettings:
    """'cpu': the defaults, for 128x256 procedural scenes on a 2-core CPU; 'paper': the
    reference's scale on a GPU (1024x2048 Cityscapes, wider networks, 64-pixel alignment
    frames; add ``vgg_weights`` for its class-masked perceptual loss and set
    ``lambda_semantic=10``)."""
    if name == "cpu":
        base = SimsSettings()
    elif name == "paper":
        base = SimsSettings(height=1024, width=2048, ngf=64, levels=6, max_channels=1024, align_size=64,
                            align_width=32, order_width=32, batch_size=1, min_area=64, lambda_semantic=10.0)
    else:
        raise ValueError(f"unknown preset {name!r}; expected 'cpu' or 'paper'")
    return with_changes(base, changes, "SIMS")


# The settings that decide the shapes of the weights; a file records them and loading checks them.
ARCHITECTURE_FIELDS = ("label_count", "ngf", "levels", "max_channels", "align_size", "align_width", "order_width",
                       "shape_size", "retrieval")


class Sims(nn.Module):
    """The trainable parts: ``synthesis`` (canvas + layout -> image and labels), ``aligner``
    and ``orderer``."""

    def __init__(self, settings: SimsSettings) -> None:
        super().__init__()
        if settings.label_count is None:
            raise ValueError("settings.label_count must be set")
        self.settings = settings
        s = settings
        self.synthesis = SynthesisNet(s.label_count, s.ngf, s.levels, s.max_channels)
        self.aligner = AlignmentNet(s.align_size, s.align_width)
        self.orderer = OrderingNet(s.label_count, s.shape_size, s.order_width)

    @property
    def size_multiple(self) -> int:
        return self.synthesis.multiple

    @property
    def ordering_learned(self) -> bool:
        """Whether the ordering classifier was trained (:func:`learns_ordering` of its settings)."""
        return learns_ordering(self.settings)

    def condition(self, label: torch.Tensor, canvas: torch.Tensor, canvas_mask: torch.Tensor) -> torch.Tensor:
        """[one-hot labels, canvas (N x 3, [-1, 1], zero where empty), canvas mask (N x 1)].

        Raises:
            ValueError: a label outside 0..label_count-1, or sizes that do not fit.
        """
        n = self.settings.label_count
        low, high = int(label.min()), int(label.max())
        if low < 0 or high >= n:
            raise ValueError(f"label values must lie in 0..{n - 1} (label_count={n}); found {low}..{high}: raise "
                             "label_count, or map the extra labels to one of the others")
        if not self.settings.retrieval:
            canvas, canvas_mask = torch.zeros_like(canvas), torch.zeros_like(canvas_mask)
        onehot = F.one_hot(label.long(), n).permute(0, 3, 1, 2).float()
        return torch.cat([onehot, canvas * canvas_mask, canvas_mask], dim=1)

    def forward(self, label, canvas, canvas_mask):
        return self.synthesis(self.condition(label, canvas, canvas_mask))


def learns_ordering(settings: SimsSettings) -> bool:
    """Whether training with ``settings`` trains the ordering classifier: only on data with
    depth-order labels (the procedural scenes; a folder has none), with retrieval and
    ``lambda_order`` > 0. Without it the paste order is ``ordering.ORDER_FALLBACK``."""
    s = settings
    return s.data == "procedural" and s.retrieval and s.lambda_order > 0


def save_sims(model: Sims, path: str | os.PathLike, half: bool = False, **extra) -> None:
    """Write all three networks with the settings (``half``: float16, for a small shipped file)."""
    save_weights(model, path, SIMS_KIND, {**extra, "settings": asdict(model.settings)}, half=half)


def load_sims(path: str | os.PathLike, map_location: str | torch.device = "cpu",
              expect: SimsSettings | None = None) -> Sims:
    """Rebuild the model a file describes and load it (eval mode).

    Raises:
        WeightsError: missing or corrupt file, another kind, architecture settings that differ from
            ``expect`` (each named), or tensors that do not fit.
    """
    settings, _ = read_settings(path, SIMS_KIND, SimsSettings, ARCHITECTURE_FIELDS, expect, "SIMS model")
    model = Sims(settings)
    load_weights(model, path, SIMS_KIND)
    return model.to(map_location).eval()
