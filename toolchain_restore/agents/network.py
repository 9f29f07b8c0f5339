"""The RL-Restore agent's network: a small CNN on the patch, the previous action, an LSTM,
and one value per action; and the stop gate that may overrule it (trained in ``stop_gate.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..envs.toolchain import NUM_ACTIONS
from ..nn import DecoupledConv2d, parse_conv_kind
from ..runtime import PrecisionMixin, check_module_precision, module_autocast
from ..tools import NUM_TOOLS

__all__ = ["SamePadConv2d", "SamePadDecoupledConv2d", "same_pad_conv", "RecurrentQNetwork", "LSTMState", "StopGate", "DECISION_STEPS"]

LSTMState = tuple[torch.Tensor, torch.Tensor]
"""(h, c), each 1 x N x hidden."""


def same_padding(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``x`` padded for TensorFlow's "same" output (ceil(input / stride)), the extra row and
    column going to the bottom and right as in the official agent."""
    pads = []
    for size, k, s in zip(reversed(x.shape[-2:]), reversed(conv.kernel_size), reversed(conv.stride)):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _unit(image: torch.Tensor) -> torch.Tensor:
    return image.float().div(255.0) if image.dtype == torch.uint8 else image.float()


class SamePadConv2d(nn.Conv2d):
    """A strided convolution with "same" padding (see :func:`same_padding`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(same_padding(x, self))


class SamePadDecoupledConv2d(DecoupledConv2d):
    """A DCNet decoupled convolution with "same" padding, for a decoupled feature extractor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(same_padding(x, self))


def same_pad_conv(kind: str, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Conv2d:
    """A "same"-padded convolution of the named kind: 'plain' or a decoupled one ('tanh_cos', ...)."""
    parsed = parse_conv_kind(kind)
    if parsed is None:
        return SamePadConv2d(in_channels, out_channels, kernel_size, stride=stride)
    magnitude, angular, weighted = parsed
    return SamePadDecoupledConv2d(in_channels, out_channels, kernel_size, stride=stride, magnitude=magnitude,
                                  angular=angular, weighted=weighted)


class RecurrentQNetwork(PrecisionMixin, nn.Module):
    """Q-network of RL-Restore (about 88k parameters).

    Features: conv 9x9 (32, stride 2), conv 5x5 (24, s2) x 3, ReLU, "same" padding, a 63x63
    patch becomes 4x4x24 = 384 values -> fc 32, ReLU. The previous tool's one-hot (12) joins
    them -> LSTM with 50 units -> linear -> 13 action values (tools 1..12, stop).

    ``conv`` = 'plain' (the paper's) or a DCNet decoupled convolution for the four feature
    convolutions ('tanh_cos', 'weighted_seg_linear', ...: see ``toolchain_restore.nn``).

    ``precision``: how its convolutions and first linear layer compute (None: the caller's
    autocast context; 'auto', 'fp32', 'bf16', 'fp16'; see ``toolchain_restore.runtime``). The
    LSTM and the head run in float32, so action values and the LSTM state are float32.
    """

    def __init__(self, patch_size: int = 63, hidden: int = 50, features: int = 32, conv: str = "plain",
                 precision: str | None = None) -> None:
        super().__init__()
        self.precision = check_module_precision(precision)
        self.patch_size = patch_size
        self.hidden = hidden
        self.conv = conv
        self.convs = nn.Sequential(
            same_pad_conv(conv, 3, 32, 9, stride=2),
            nn.ReLU(inplace=True),
            same_pad_conv(conv, 32, 24, 5, stride=2),
            nn.ReLU(inplace=True),
            same_pad_conv(conv, 24, 24, 5, stride=2),
            nn.ReLU(inplace=True),
            same_pad_conv(conv, 24, 24, 5, stride=2),
            nn.ReLU(inplace=True),
        )
        side = patch_size
        for _ in range(4):
            side = -(-side // 2)
        self.fc = nn.Linear(24 * side * side, features)
        self.lstm = nn.LSTM(features + NUM_TOOLS, hidden)
        self.head = nn.Linear(hidden, NUM_ACTIONS)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> LSTMState:
        zeros = torch.zeros(1, batch, self.hidden, device=device)
        return zeros, zeros.clone()

    def forward(
        self, image: torch.Tensor, previous_action: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """Action values for a sequence.

        Args:
            image: T x N x 3 x H x W (uint8 or float in [0, 1]), or N x 3 x H x W for one step.
            previous_action: T x N x 12 (or N x 12) one-hot of the previous tool.
            state: the LSTM state before the first step (zeros if None).

        Returns:
            T x N x 13 action values (N x 13 for one step) and the state after the last step.
        """
        single = image.ndim == 4
        if single:
            image, previous_action = image[None], previous_action[None]
        if image.ndim != 5 or image.shape[2] != 3:
            raise ValueError(f"image must be (T x) N x 3 x H x W, got shape {tuple(image.shape)}")
        steps, batch = image.shape[:2]
        if previous_action.shape != (steps, batch, NUM_TOOLS):
            raise ValueError(
                f"previous_action must be (T x) N x {NUM_TOOLS} for images of shape {tuple(image.shape)}, "
                f"got {tuple(previous_action.shape)}"
            )
        x = _unit(image.flatten(0, 1))
        if state is None:
            state = self.initial_state(batch, image.device)
        with module_autocast(self.precision, image.device):
            features = torch.relu(self.fc(self.convs(x).flatten(1))).view(steps, batch, -1)
        # The LSTM and the head are a sliver of the work and hold the recurrent state: float32
        # in every precision (oneDNN has no bf16 LSTM on CPUs without native bf16, either).
        with torch.autocast(image.device.type, enabled=False):
            out, state = self.lstm(torch.cat([features.float(), previous_action.float()], dim=-1), state)
            values = self.head(out)
        return (values[0] if single else values), state

    def macs_per_step(self) -> int:
        """Multiply-adds of one decision on one patch (convolutions, fc, LSTM, head). A
        decoupled convolution is counted as its inner product only (its patch norms add a
        cheap ones-kernel convolution per group)."""
        total, side = 0, self.patch_size
        for conv in self.convs:
            if isinstance(conv, nn.Conv2d):
                side = -(-side // conv.stride[0])
                total += side * side * conv.out_channels * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        total += self.fc.in_features * self.fc.out_features
        total += 4 * self.hidden * (self.lstm.input_size + self.hidden)
        total += self.head.in_features * self.head.out_features
        return total


DECISION_STEPS = 3
"""Tool counts a stop gate tells apart (0, 1, 2 or more applied): the decisions of 3-tool chains."""


class StopGate(nn.Module):
    """Logits that stopping now beats applying the agent's chosen tool and going on, from
    the current patch, the previous tool, the number of tools applied and the chosen tool.

    Four 3x3 convolutions (16, 32, 64, 64 channels; the first at full resolution), each
    one's features pooled to their mean and standard deviation over the patch (so that the
    head sees the full-resolution statistics of residual noise and ringing as well as the
    coarse ones), then 64 hidden units and one logit per tool the agent may have chosen:
    whether the next tool hurts depends on which it is.

    ``sees_result``: the gate also sees the patch after the chosen tool, and its logit says
    whether to undo that tool and stop. Its first convolution reads the result and the change
    the tool made (scaled by ``RESULT_CHANGE_SCALE``: a tool's change is a few levels, the
    patch spans the whole range). The environment has no undo, so such a gate is scored on
    recorded episodes only (``stop_gate.py``).
    """

    RESULT_CHANGE_SCALE = 4.0

    def __init__(self, channels: int = 16, sees_result: bool = False) -> None:
        super().__init__()
        widths = (channels, 2 * channels, 4 * channels, 4 * channels)
        self.stages = nn.ModuleList()
        self.sees_result = sees_result
        before = 6 if sees_result else 3
        for i, width in enumerate(widths):
            self.stages.append(nn.Sequential(nn.Conv2d(before, width, 3, stride=1 if i == 0 else 2, padding=1),
                                             nn.ReLU(inplace=True)))
            before = width
        self.channels = channels
        self.head = nn.Sequential(nn.Linear(2 * sum(widths) + NUM_TOOLS + DECISION_STEPS, 64), nn.ReLU(inplace=True),
                                  nn.Linear(64, NUM_TOOLS))

    def forward(self, image: torch.Tensor, previous_action: torch.Tensor, step: torch.Tensor,
                tool: torch.Tensor, result: torch.Tensor | None = None) -> torch.Tensor:
        """N logits for N x 3 x P x P patches (uint8, or floats in [0, 1]), N x 12 one-hot
        previous tools, N tool counts and the N tools (0..11) the agent chose; with
        ``sees_result``, ``result`` is the patches after that tool."""
        x = _unit(image)
        if self.sees_result:
            if result is None:
                raise ValueError("this gate sees the tool's result: pass result (the patches after the chosen tool)")
            after = _unit(result)
            x = torch.cat([after, (after - x) * self.RESULT_CHANGE_SCALE], dim=1)
        pooled = []
        for stage in self.stages:
            x = stage(x)
            flat = x.flatten(2)
            pooled += [flat.mean(-1), flat.std(-1)]
        steps = F.one_hot(step.long().clamp(0, DECISION_STEPS - 1), DECISION_STEPS).float()
        logits = self.head(torch.cat([*pooled, previous_action.float(), steps], dim=1))
        return logits.gather(1, tool.long().clamp(0, NUM_TOOLS - 1).view(-1, 1)).squeeze(1)

    def macs(self, patch_size: int) -> int:
        """Multiply-adds of one decision on one patch."""
        total, side = 0, patch_size
        for stage in self.stages:
            conv = stage[0]
            side = -(-side // conv.stride[0])
            total += side * side * conv.out_channels * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        return total + sum(m.in_features * m.out_features for m in self.head if isinstance(m, nn.Linear))
