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

__all__ = ["Toolbox", "load_toolbox", "combine_toolboxes", "SHIPPED_TOOLBOX", "SEPARATE_TOOLBOX", "WEIGHTS_KIND"]

WEIGHTS_KIND = "toolchain_restore.Toolbox"
SHIPPED_TOOLBOX = "toolbox_joint.safetensors"
"""The toolbox ``load_toolbox()`` gives: the tools after joint fine-tuning with the shipped agent."""
SEPARATE_TOOLBOX = "toolbox.safetensors"
"""The tools as trained one by one on their own bands, before joint fine-tuning (``toolbox.md``)."""


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

    def forward(self, x: torch.Tensor, i: int) -> torch.Tensor:
        check_image_batch(x)
        tool = self.tools[self._check_tool(i)]
        with module_autocast(self.precision, x.device):
            # Channels-last (NHWC) convolutions run about a third faster with oneDNN and cuDNN.
            return tool(x.contiguous(memory_format=torch.channels_last))

    def apply_tools(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Apply tool ``actions[n]`` to row ``n``; rows whose action is outside 0..11 pass unchanged."""
        check_image_batch(x)
        actions = torch.as_tensor(actions, device=x.device).long()
        if actions.shape != (x.shape[0],):
            raise ValueError(f"need one action per row: {x.shape[0]} rows, actions of shape {tuple(actions.shape)}")
        out = x.clone()
        with module_autocast(self.precision, x.device):
            for i in torch.unique(actions).tolist():
                if 0 <= i < NUM_TOOLS:
                    rows = (actions == i).nonzero(as_tuple=True)[0]
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
    precision: str | None = "auto",
) -> Toolbox:
    """The shipped toolbox (``path=None``: the jointly fine-tuned tools, ``SHIPPED_TOOLBOX``),
    a toolbox file, or a Toolbox (its tools, at ``precision``). The tools before joint
    fine-tuning are ``load_toolbox(shipped_weights(SEPARATE_TOOLBOX))``.

    ``precision``: 'auto' (bf16 where this machine runs it faster, else fp32), 'fp32',
    'bf16', 'fp16' (CUDA) or None (the caller's autocast context). The returned toolbox is
    in eval mode.
    """
    if isinstance(path, Toolbox):
        toolbox = path.with_precision(precision)
    else:
        toolbox = Toolbox.load(shipped_weights(SHIPPED_TOOLBOX) if path is None else path, precision=precision)
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
