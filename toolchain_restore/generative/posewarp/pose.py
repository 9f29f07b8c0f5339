"""Poses for PoseWarp: the 14 joints and 10 body parts of the reference, Gaussian joint
heatmaps, the limb-shaped log prior of the segmentation, per-part transforms fitted by
least squares, and inverse warping of masked parts with bilinear sampling.

Joint coordinates are (x, y) in pixels with the centre of the top-left pixel at (0, 0);
a joint that is not known is NaN.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InvalidInput

__all__ = ["JOINT_NAMES", "JOINT_COUNT", "LIMBS", "PART_COUNT", "FLIP_ORDER", "pose_heatmaps", "limb_log_prior",
           "fit_transform", "part_transforms", "warp_parts", "check_joints", "heatmap_sigma"]

JOINT_NAMES = ("head", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
               "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle")
"""The 14 joints in MPII order."""
JOINT_COUNT = len(JOINT_NAMES)
LIMBS: tuple[tuple[int, ...], ...] = ((0, 1), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (11, 12), (12, 13),
                                      (2, 5, 8, 11))
"""The 10 body parts as joint lists; the last is the torso."""
PART_COUNT = len(LIMBS)
FLIP_ORDER = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10)
"""Joint order after a left-right mirror: right and left swap."""


def check_joints(joints: np.ndarray, name: str = "joints") -> np.ndarray:
    """``joints`` as a float64 14 x 2 array, or an InvalidInput (a ValueError) naming the shape found."""
    array = np.asarray(joints, dtype=np.float64)
    if array.shape != (JOINT_COUNT, 2):
        raise InvalidInput(f"{name}: expected a {JOINT_COUNT} x 2 array of (x, y) joint positions, got shape "
                           f"{array.shape}")
    return array


def heatmap_sigma(size: int) -> float:
    """The heatmaps' standard deviation in pixels for images of ``size``: the reference's 7/4
    pixels at half of 256, i.e. 3.5 at 256, scaled with the image."""
    return 3.5 * size / 256


def pose_heatmaps(joints: np.ndarray | torch.Tensor, height: int, width: int,
                  sigma: float | None = None) -> torch.Tensor:
    """14 x H x W Gaussian heatmaps (peak 1 at each joint; all zero for a NaN joint), or
    N x 14 x H x W for N x 14 x 2 joints."""
    j = torch.as_tensor(np.asarray(joints, dtype=np.float32) if not torch.is_tensor(joints) else joints).float()
    single = j.dim() == 2
    if single:
        j = j[None]
    sigma = heatmap_sigma(max(height, width)) if sigma is None else sigma
    ys = torch.arange(height, dtype=torch.float32).view(1, 1, height, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, 1, width)
    known = torch.isfinite(j).all(-1)
    jx = torch.nan_to_num(j[..., 0], nan=-1e4)[..., None, None]
    jy = torch.nan_to_num(j[..., 1], nan=-1e4)[..., None, None]
    maps = torch.exp(-((xs - jx) ** 2 + (ys - jy) ** 2) / (2 * sigma**2)) * known[..., None, None]
    return maps[0] if single else maps


def limb_log_prior(joints: np.ndarray | torch.Tensor, height: int, width: int, floor: float = 1e-3) -> torch.Tensor:
    """11 x H x W log prior of the segmentation: channel 0 the background, then one
    anisotropic Gaussian along each limb (long axis half the limb's length plus a margin,
    short axis a fixed fraction of the image), the torso a Gaussian of its 4 joints' spread.
    N x 14 x 2 joints give N x 11 x H x W."""
    j = torch.as_tensor(np.asarray(joints, dtype=np.float32) if not torch.is_tensor(joints) else joints).float()
    single = j.dim() == 2
    if single:
        j = j[None]
    size = max(height, width)
    width_sigma = 0.04 * size  # about a limb's half thickness at the reference's framing
    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width)
    parts = []
    for limb in LIMBS:
        pts = j[:, list(limb)]  # N x k x 2
        known = torch.isfinite(pts).all(-1).all(-1)  # N
        pts = torch.nan_to_num(pts, nan=0.0)
        centre = pts.mean(1)  # N x 2
        if len(limb) == 2:
            axis = pts[:, 1] - pts[:, 0]
            length = axis.norm(dim=-1).clamp_min(1e-3)
            u = axis / length[:, None]
            along_sigma = length / 2 + width_sigma
            across_sigma = torch.full_like(length, width_sigma)
        else:  # the torso: principal axes of its joints, widened by the limb thickness
            d = pts - centre[:, None]
            cov = d.transpose(1, 2) @ d / len(limb)
            evals, evecs = torch.linalg.eigh(cov)
            u = evecs[:, :, 1]
            along_sigma = evals[:, 1].clamp_min(0).sqrt() + width_sigma
            across_sigma = evals[:, 0].clamp_min(0).sqrt() + width_sigma
        dx = xs - centre[:, 0, None, None]
        dy = ys - centre[:, 1, None, None]
        a = dx * u[:, 0, None, None] + dy * u[:, 1, None, None]
        b = -dx * u[:, 1, None, None] + dy * u[:, 0, None, None]
        g = torch.exp(-0.5 * ((a / along_sigma[:, None, None]) ** 2 + (b / across_sigma[:, None, None]) ** 2))
        parts.append(g * known[:, None, None])
    body = torch.stack(parts, 1)
    background = (1 - body.amax(1, keepdim=True)).clamp_min(0)
    prior = torch.log(torch.cat([background, body], 1) + floor)
    return prior[0] if single else prior


def fit_transform(target: np.ndarray, source: np.ndarray, kind: Literal["similarity", "affine"] = "similarity") -> np.ndarray:
    """The 2 x 3 matrix ``M`` minimising sum |M [t; 1] - s|^2 over corresponding points
    (k x 2 each): maps target-pose points onto source-pose points (inverse warping).

    'similarity' fits rotation, uniform scale and shift (the reference code); 'affine' a
    full affine map (the paper). Two points do not fix an affine map: a third point is
    added to each side, perpendicular to the segment at its length, so a two-joint limb
    gets the similarity (the only map its joints determine) under both settings.
    """
    t, s = np.asarray(target, np.float64), np.asarray(source, np.float64)
    if t.shape != s.shape or t.ndim != 2 or t.shape[1] != 2 or len(t) < 2:
        raise ValueError(f"fit_transform needs matching k x 2 point arrays with k >= 2, got {t.shape} and {s.shape}")
    if kind == "affine":
        if len(t) == 2:
            perp = lambda p: p[0] + np.array([-(p[1] - p[0])[1], (p[1] - p[0])[0]])  # noqa: E731
            t, s = np.vstack([t, perp(t)]), np.vstack([s, perp(s)])
        design = np.hstack([t, np.ones((len(t), 1))])
        solution, *_ = np.linalg.lstsq(design, s, rcond=None)
        return solution.T
    if kind != "similarity":
        raise ValueError(f"transform kind must be 'similarity' or 'affine', got {kind!r}")
    # x_s = a x - b y + c,  y_s = b x + a y + d
    rows = np.zeros((2 * len(t), 4))
    rows[0::2] = np.stack([t[:, 0], -t[:, 1], np.ones(len(t)), np.zeros(len(t))], 1)
    rows[1::2] = np.stack([t[:, 1], t[:, 0], np.zeros(len(t)), np.ones(len(t))], 1)
    (a, b, c, d), *_ = np.linalg.lstsq(rows, s.reshape(-1), rcond=None)
    return np.array([[a, -b, c], [b, a, d]])


_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def part_transforms(source_joints: np.ndarray, target_joints: np.ndarray,
                    kind: Literal["similarity", "affine"] = "similarity") -> np.ndarray:
    """10 x 2 x 3 transforms, one per body part, mapping the target pose's joints of the part
    onto the source pose's. A part with an unknown joint or of (near) zero size in the target
    gets the identity (its warped image is then the masked source where it is)."""
    s, t = check_joints(source_joints, "source joints"), check_joints(target_joints, "target joints")
    out = np.empty((PART_COUNT, 2, 3))
    for k, limb in enumerate(LIMBS):
        ps, pt = s[list(limb)], t[list(limb)]
        if not (np.isfinite(ps).all() and np.isfinite(pt).all()) or np.ptp(pt, 0).max() < 1e-3 \
                or np.ptp(ps, 0).max() < 1e-3:
            out[k] = _IDENTITY
        else:
            out[k] = fit_transform(pt, ps, kind)
    return out


def warp_parts(image: torch.Tensor, masks: torch.Tensor, transforms: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Inverse warping of each masked part: output pixel p of part k samples
    ``image * masks[k]`` at ``transforms[k] @ [p; 1]`` (bilinear, zero outside).

    Arguments:
        image: N x C x H x W.
        masks: N x P x H x W part masks (the segmentation's body channels).
        transforms: N x P x 2 x 3 pixel-coordinate maps from the target pose to the source.
    Returns:
        N x P x C x H x W warped parts.
    """
    n, c, h, w = image.shape
    p = masks.shape[1]
    m = torch.as_tensor(transforms, dtype=image.dtype, device=image.device).reshape(n * p, 2, 3)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=image.dtype, device=image.device),
                            torch.arange(w, dtype=image.dtype, device=image.device), indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, h * w, 3)
    source = grid @ m.transpose(1, 2)  # (n p) x hw x 2 in source pixels
    # Pixel centres to grid_sample's [-1, 1] with align_corners=False.
    norm = torch.stack([(2 * source[..., 0] + 1) / w - 1, (2 * source[..., 1] + 1) / h - 1], -1)
    masked = (image[:, None] * masks[:, :, None]).reshape(n * p, c, h, w)
    warped = F.grid_sample(masked, norm.reshape(n * p, h, w, 2), mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return warped.reshape(n, p, c, h, w)
