"""Training PoseWarp (or its U-Net baseline) on the generic trainer.

Main stage: the reconstruction loss (L1, or the normalised feature loss). Optional GAN
stage (``gan_iterations``): the same plus ``gan_weight`` times a conditional LSGAN loss,
the discriminator seeing [image, source pose, target pose]. One step computes the
discriminator's loss on real and detached fake images and the generator's adversarial
loss with the discriminator's parameters frozen, and returns the sum, so each network
gets the gradient of its own loss from one optimiser (as pix2pixHD's task does).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ...metrics import ssim
from ...training import Trainer, TrainerSettings, is_main_process, step_rng
from ..datasets import from_model_image, to_model_image
from ..losses import lsgan_loss
from ..scenes import label_palette
from .data import PosePair, pair_source
from .losses import NormalisedFeatureLoss, feature_extractor
from .model import PoseWarp, PoseWarpSettings, save_posewarp

__all__ = ["PoseWarpTask", "train_posewarp", "trainer_defaults", "pairs_to_batch", "pose_metrics", "mask_picture",
           "export_checkpoint"]

_EVAL_BATCH = 8


TRAINER_DEFAULTS: dict[str, object] = dict(lr=1e-4, schedule="constant", out_dir="runs/posewarp")
"""How PoseWarp's trainer settings differ from ``TrainerSettings``'s defaults (``posewarp train`` takes them too)."""


def trainer_defaults(**changes) -> TrainerSettings:
    """The reference's optimiser: Adam lr 1e-4 (constant), beta1 0.9."""
    base = {**TRAINER_DEFAULTS, **changes}
    return TrainerSettings(**base)


def pairs_to_batch(model: PoseWarp, pairs: list[PosePair]) -> dict:
    """Tensors of a list of pairs, with the pose inputs the model needs (heatmaps, prior, transforms)."""
    source = torch.stack([to_model_image(p.source) for p in pairs])
    target = torch.stack([to_model_image(p.target) for p in pairs])
    sj = torch.from_numpy(np.stack([p.source_joints for p in pairs])).float()
    tj = torch.from_numpy(np.stack([p.target_joints for p in pairs])).float()
    return {"source": source, "target": target, "source_joints": sj, "target_joints": tj,
            "poses": model.pose_inputs(sj, tj)}


def pose_metrics(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, list[float]]:
    """Per-image SSIM (Wang et al., on uint8) and L1 (on [0, 1]) of N x 3 x H x W images in [-1, 1]."""
    values: dict[str, list[float]] = {"ssim": [], "l1": []}
    for o, t in zip(outputs, targets):
        a, b = from_model_image(o), from_model_image(t)
        values["ssim"].append(ssim(a, b))
        values["l1"].append(float(np.abs(a.astype(np.float64) - b).mean() / 255))
    return values


def mask_picture(masks: torch.Tensor) -> torch.Tensor:
    """3 x H x W picture of an 11 x H x W soft segmentation (expected colour per pixel)."""
    palette = torch.from_numpy(label_palette(masks.shape[0])).float().to(masks.device) / 255
    palette[0] = 0.0
    return torch.einsum("khw,kc->chw", masks.float(), palette)


class PoseWarpTask:
    """One stage of PoseWarp training as a task of the generic trainer.

    Arguments:
        settings: architecture, losses and data.
        gan: the GAN stage (adds the discriminator and its losses).
        init: a model whose generators start this one (the main stage's, for the GAN stage).
        seed: initialisation seed of the networks.
    """

    def __init__(self, settings: PoseWarpSettings, gan: bool = False, init: PoseWarp | None = None,
                 seed: int = 0) -> None:
        self.settings, self.gan = settings, gan
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = PoseWarp(settings, discriminator=gan)
        if init is not None:
            self.model.generators().load_state_dict(init.generators().state_dict())
        s = settings
        self.train = pair_source(s.data, "train", s.size, s.train_videos, s.frames_per_video, s.augment)
        self.test = pair_source(s.data, "test", s.size, s.test_videos, s.frames_per_video, False)
        self.test_pairs = self.test.fixed(s.test_pairs)
        self.criterion = None
        if s.loss == "feature":
            calibration = [p.target for p in self.train.fixed(s.feature_std_images)]
            images = torch.stack([to_model_image(x) for x in calibration])
            self.criterion = NormalisedFeatureLoss(feature_extractor(s.vgg_weights), images)
        elif s.loss != "l1":
            raise ValueError(f"loss must be 'l1' or 'feature', got {s.loss!r}")

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> dict:
        rng = step_rng(seed, step, rank)
        return pairs_to_batch(self.model, [self.train.sample(rng) for _ in range(self.settings.batch_size)])

    def reconstruction(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.criterion is None:
            return (output.float() - target.float()).abs().mean()
        return self.criterion.to(output.device)(output, target)

    def loss(self, model: PoseWarp, batch: dict, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        source, target = batch["source"].to(device), batch["target"].to(device)
        result = model(source, batch["source_joints"], batch["target_joints"], batch["poses"])
        fake = result["output"]
        rec = self.reconstruction(fake, target)
        logs = {self.settings.loss: rec.item()}
        if not self.gan:
            return rec, logs
        poses = torch.cat([batch["poses"]["source_pose"], batch["poses"]["target_pose"]], 1).to(device)
        d = model.discriminator
        pred_real = d(torch.cat([target, poses], 1))
        pred_fake_detached = d(torch.cat([fake.detach(), poses], 1))
        d_real, d_fake = lsgan_loss(pred_real, True), lsgan_loss(pred_fake_detached, False)
        d.requires_grad_(False)
        try:
            g_gan = lsgan_loss(d(torch.cat([fake, poses], 1)), True)
        finally:
            d.requires_grad_(True)
        generator = rec + self.settings.gan_weight * g_gan
        logs.update(g_gan=g_gan.item(), d_real=d_real.item(), d_fake=d_fake.item(), generator=generator.item())
        return generator + 0.5 * (d_real + d_fake), logs

    def _test_batches(self, limit: int | None = None):
        pairs = self.test_pairs if limit is None else self.test_pairs[:limit]
        for lo in range(0, len(pairs), _EVAL_BATCH):
            yield pairs_to_batch(self.model, pairs[lo:lo + _EVAL_BATCH])

    @torch.no_grad()
    def outputs(self, model: PoseWarp, device: torch.device, limit: int | None = None):
        """(batch, model result) for each batch of held-out pairs."""
        for batch in self._test_batches(limit):
            yield batch, model(batch["source"].to(device), batch["source_joints"], batch["target_joints"],
                               batch["poses"])

    def evaluate(self, model: PoseWarp, device: torch.device) -> dict[str, float]:
        """Mean SSIM and L1 (on [0, 1]) of the outputs to the real target frames of held-out pairs."""
        values: dict[str, list[float]] = {"ssim": [], "l1": []}
        for batch, result in self.outputs(model, device):
            for k, v in pose_metrics(result["output"].cpu(), batch["target"]).items():
                values[k] += v
        return {k: float(np.mean(v)) for k, v in values.items()}

    def sample_images(self, model: PoseWarp, device: torch.device) -> dict[str, torch.Tensor]:
        """Per held-out pair: source | target | output, and for the modular model the masks
        and the warped parts (summed)."""
        rows, parts = [], []
        for batch, result in self.outputs(model, device, limit=2):
            for k in range(len(batch["source"])):
                to01 = lambda x: (x.float().cpu().clamp(-1, 1) + 1) / 2  # noqa: E731
                rows.append(torch.cat([to01(batch["source"][k]), to01(batch["target"][k]),
                                       to01(result["output"][k])], 2))
                if "masks" in result:
                    warped = result["warped"][k].sum(0)
                    parts.append(torch.cat([mask_picture(result["masks"][k].cpu()), to01(warped),
                                            to01(result["background"][k])], 2))
        images = {"source_target_output": torch.cat(rows, 1)}
        if parts:
            images["masks_warped_background"] = torch.cat(parts, 1)
        return images


def _stage_trainers(settings: PoseWarpSettings, trainer: TrainerSettings) -> dict[str, TrainerSettings]:
    """Each stage's trainer settings by stage name, in training order, each in its own folder
    of ``trainer.out_dir``: the main stage, then the GAN stage with ``gan_iterations``."""
    out = Path(trainer.out_dir)
    stages = {"main": replace(trainer, out_dir=str(out / "main"))}
    if settings.gan_iterations > 0:
        stages["gan"] = replace(trainer, out_dir=str(out / "gan"), iterations=settings.gan_iterations, hold=0, warmup=0)
    return stages


def train_posewarp(settings: PoseWarpSettings, trainer: TrainerSettings,
                   output: str | os.PathLike | None = None) -> dict[str, float]:
    """The main stage in ``out_dir/main`` then, with ``gan_iterations``, the GAN stage in
    ``out_dir/gan`` from the main stage's networks; each resumes from its own checkpoint,
    and both folders pass the resume rule before the main stage trains (a refusal leaves
    them as they were). Writes the model (without discriminator) to ``output`` (default
    out_dir/posewarp.safetensors) and returns the last stage's held-out metrics."""
    stages = _stage_trainers(settings, trainer)
    for stage_trainer in stages.values():
        Trainer(stage_trainer, (settings,)).check_folder()
    main = PoseWarpTask(settings, seed=trainer.seed)
    metrics = Trainer(stages["main"], (settings,)).fit(main)
    model = main.model
    if "gan" in stages:
        stage = PoseWarpTask(settings, gan=True, init=main.model, seed=trainer.seed)
        metrics = Trainer(stages["gan"], (settings,)).fit(stage)
        model = stage.model
    if is_main_process():
        save_posewarp(model.cpu(), Path(output) if output else Path(trainer.out_dir) / "posewarp.safetensors",
                      iterations=trainer.iterations, gan_iterations=settings.gan_iterations, metrics=metrics)
    return metrics


def export_checkpoint(checkpoint: str | os.PathLike, settings: PoseWarpSettings, output: str | os.PathLike,
                      half: bool = True) -> int:
    """Write the networks of a (possibly still running) training's checkpoint as a weights
    file (without discriminator); returns the checkpoint's step."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = PoseWarp(settings, discriminator=any(k.startswith("discriminator.") for k in state["model"]))
    model.load_state_dict(state["model"])
    save_posewarp(model, output, half=half, iterations=int(state["step"]), checkpoint=str(checkpoint))
    return int(state["step"])
