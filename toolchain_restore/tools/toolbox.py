"""The Toolbox: the 12 tools as one module, applied one at a time or batched by choice."""

from __future__ import annotations

import numbers
import os
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInput
from ..data.tensors import check_image_batch
from ..runtime import PrecisionMixin, check_module_precision, module_autocast
from ..serialization import load_weights, read_metadata, save_weights, shipped_weights
from .architectures import LargeTool, SmallTool
from .specs import NUM_TOOLS, TOOL_SPECS, ToolSpec

__all__ = ["Toolbox", "load_toolbox", "combine_toolboxes", "SEPARATE_TOOLBOX", "JOINT_TOOLBOX", "WEIGHTS_KIND",
           "FP32_TOOLS_KEY"]

WEIGHTS_KIND = "toolchain_restore.Toolbox"
FP32_TOOLS_KEY = "fp32_tools"
"""Header key: the tool numbers (1..12) that compute in float32 whatever the toolbox's precision,
because bf16 moved their PSNR by more than the 0.02 dB the project allows (toolbox.md)."""
SEPARATE_TOOLBOX = "toolbox.safetensors"
"""The toolbox ``load_toolbox()`` gives: the tools as trained one by one on their own bands
(``toolbox.md``), for every use but the shipped agent's chains: one tool alone, a fixed
chain, the oracles, the environment, an agent of one's own."""
JOINT_TOOLBOX = "toolbox_joint.safetensors"
"""The tools jointly fine-tuned through the shipped agent's chains (``toolbox_joint.md``),
given by ``load_toolbox(for_shipped_agent=True)``. Tuning them for that agent's chains moves
each one off its own band, so nothing else uses them."""


class Toolbox(PrecisionMixin, nn.Module):
    """The 12 restoration tools of RL-Restore.

    ``toolbox(x, i)`` applies tool ``i`` (0..11) to ``x``, a float tensor N x 3 x H x W
    in [0, 1] of any spatial size, and returns ``x + tool_i(x)`` (not clipped, float32).
    ``toolbox.apply_tools(x, actions)`` runs each tool once on the rows that chose it.

    ``precision``: how the tools compute (see ``toolchain_restore.runtime``): None (a new
    toolbox's default: the caller's autocast context, as while training), 'auto', 'fp32',
    'bf16' or 'fp16'. The residual addition of each tool is always float32.
    ``toolbox.with_precision(p)`` is the same tools at another precision.
    """

    def __init__(self, conv: str = "plain", precision: str | None = None) -> None:
        super().__init__()
        self.specs: tuple[ToolSpec, ...] = TOOL_SPECS
        self.conv = conv
        """'plain' (the paper's tools) or a DCNet decoupled convolution in every layer ('tanh_cos', ...)."""
        self.tools = nn.ModuleList(SmallTool(conv) if s.size == "small" else LargeTool(conv) for s in TOOL_SPECS)
        self.precision = check_module_precision(precision)

    def __len__(self) -> int:
        return NUM_TOOLS

    @staticmethod
    def _check_tool(i: int) -> int:
        if isinstance(i, torch.Tensor) and i.numel() == 1 and not i.is_floating_point():
            i = int(i.item())
        if not isinstance(i, numbers.Integral) or isinstance(i, (bool, np.bool_)) or not 0 <= i < NUM_TOOLS:
            raise ValueError(f"tool index must be an int in 0..{NUM_TOOLS - 1}, got {i!r}")
        return int(i)

    @property
    def fp32_tools(self) -> frozenset[int]:
        """The tool numbers (1..12) the file's header keeps in float32 (``FP32_TOOLS_KEY``)."""
        return frozenset(int(n) for n in getattr(self, "config", {}).get(FP32_TOOLS_KEY, ()))

    def _tool_precision(self, i: int) -> str | None:
        return "fp32" if self.precision is not None and i + 1 in self.fp32_tools else self.precision

    def forward(self, x: torch.Tensor, i: int) -> torch.Tensor:
        check_image_batch(x)
        i = self._check_tool(i)
        tool = self.tools[i]
        with module_autocast(self._tool_precision(i), x.device):
            # Channels-last (NHWC) convolutions run about a third faster with oneDNN and cuDNN.
            return tool(x.contiguous(memory_format=torch.channels_last))

    def apply_tools(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Apply tool ``actions[n]`` to row ``n``; rows whose action is outside 0..11 pass unchanged."""
        check_image_batch(x)
        actions = torch.as_tensor(actions, device=x.device).long()
        if actions.shape != (x.shape[0],):
            raise ValueError(f"need one action per row: {x.shape[0]} rows, actions of shape {tuple(actions.shape)}")
        out = x.clone()
        for i in torch.unique(actions).tolist():
            if 0 <= i < NUM_TOOLS:
                rows = (actions == i).nonzero(as_tuple=True)[0]
                with module_autocast(self._tool_precision(i), x.device):
                    out[rows] = self.tools[i](x[rows].contiguous(memory_format=torch.channels_last))
        return out

    def apply(self, fn_or_x, actions=None):
        """``nn.Module.apply(fn)``; called with images and actions it is the old name of
        :meth:`apply_tools`, kept one release with a deprecation warning."""
        if actions is None and callable(fn_or_x):
            return super().apply(fn_or_x)
        warnings.warn("Toolbox.apply(x, actions) is deprecated; use Toolbox.apply_tools(x, actions)", DeprecationWarning,
                      stacklevel=2)
        return self.apply_tools(fn_or_x, actions)

    def macs(self, i: int, height: int, width: int) -> int:
        """Multiply-adds of tool ``i`` on one H x W image (stride 1, same padding)."""
        return TOOL_SPECS[self._check_tool(i)].macs_per_pixel * int(height) * int(width)

    def save(self, path: str | os.PathLike, **config) -> None:
        save_weights(self, path, WEIGHTS_KIND, {**config, "conv": self.conv})

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu",
             precision: str | None = None) -> "Toolbox":
        _, config = read_metadata(path)
        toolbox = cls(conv=str(config.get("conv", "plain")), precision=precision)
        toolbox.config = load_weights(toolbox, path, WEIGHTS_KIND)
        return toolbox.to(map_location)

    def describe(self) -> str:
        return "\n".join(s.describe() for s in self.specs)


def load_toolbox(
    path: str | os.PathLike | Toolbox | None = None, device: str | torch.device = "cpu",
    precision: str | None = "auto", for_shipped_agent: bool = False,
) -> Toolbox:
    """A toolbox file, a Toolbox (its tools, at ``precision``), or for ``path=None`` the
    shipped tools: the separately trained ones (``SEPARATE_TOOLBOX``), or with
    ``for_shipped_agent`` the ones jointly fine-tuned for the shipped agent's chains
    (``JOINT_TOOLBOX``). ``for_shipped_agent`` changes nothing when ``path`` is given.

    ``precision``: 'auto' (bf16 where this machine runs it faster, else fp32), 'fp32',
    'bf16', 'fp16' (CUDA) or None (the caller's autocast context). The returned toolbox is
    in eval mode.
    """
    if isinstance(path, Toolbox):
        toolbox = path.with_precision(precision)
    else:
        shipped = JOINT_TOOLBOX if for_shipped_agent else SEPARATE_TOOLBOX
        toolbox = Toolbox.load(shipped_weights(shipped) if path is None else path, precision=precision)
    return toolbox.to(device, memory_format=torch.channels_last).eval()


def combine_toolboxes(parts: Sequence[tuple[str | os.PathLike, Sequence[int]]]) -> Toolbox:
    """One toolbox from several files, each giving the tools numbered (1..12) beside it, so
    that tools trained in separate runs (or processes) ship as one file. Every tool must
    come from exactly one part, and all parts must share one kind of convolution. The
    result records which file each tool came from (``config["combined_from"]``)."""
    owners: dict[int, str] = {}
    for path, tools in parts:
        for t in tools:
            if not 1 <= int(t) <= NUM_TOOLS:
                raise InvalidInput(f"--part {path}: tool numbers are 1..{NUM_TOOLS}, got {t}")
            if int(t) in owners:
                raise InvalidInput(f"--part: tool {t} is given by both {owners[int(t)]} and {path}")
            owners[int(t)] = str(path)
    missing = sorted(set(range(1, NUM_TOOLS + 1)) - set(owners))
    if missing:
        raise InvalidInput(f"--part: no part gives tools {missing}")
    loaded = {path: Toolbox.load(path) for path in dict.fromkeys(owners.values())}
    convs = {tb.conv for tb in loaded.values()}
    if len(convs) > 1:
        raise InvalidInput(f"--part: the parts have different convolutions: {sorted(convs)}")
    combined = Toolbox(conv=convs.pop())
    for t, path in owners.items():
        combined.tools[t - 1].load_state_dict(loaded[path].tools[t - 1].state_dict())
    combined.config = {"combined_from": {str(t): owners[t] for t in sorted(owners)}}
    return combined
