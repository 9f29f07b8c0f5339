"""SIMS (Qi, Chen, Jia, Koltun, CVPR 2018): semi-parametric image synthesis. A memory bank
of training segments, retrieval by shape and context, alignment by a spatial transformer,
a pairwise ordering classifier, canvases pasted back to front, and a cascaded-refinement
synthesis network, in Python end to end on the project's generic trainer."""

from .bank import BankError, MemoryBank, Segment, Segments, describe_segments
from .canvas import CanvasSimulation, compose_canvas, place_segment, simulate_canvas
from .model import SIMS_KIND, Sims, SimsSettings, load_sims, preset, save_sims
from .networks import AlignmentNet, OrderingNet, SynthesisNet, warp
from .ordering import overlapping_pairs, paste_order, true_pairs
from .sampling import CanvasResult, build_canvas, evaluate_sims, load_shipped, synthesize
from .training import SimsTask, export_checkpoint, ordering_accuracy, ordering_pairs, train_sims, trainer_defaults

__all__ = ["BankError", "MemoryBank", "Segment", "Segments", "describe_segments", "CanvasSimulation",
           "compose_canvas", "place_segment", "simulate_canvas", "SIMS_KIND", "Sims", "SimsSettings", "load_sims",
           "preset", "save_sims", "AlignmentNet", "OrderingNet", "SynthesisNet", "warp", "overlapping_pairs",
           "paste_order", "true_pairs", "CanvasResult", "build_canvas", "evaluate_sims", "load_shipped", "synthesize",
           "SimsTask", "export_checkpoint", "ordering_accuracy", "ordering_pairs", "train_sims", "trainer_defaults"]
