"""Training pix2pixHD on the generic trainer, with the reference's coarse-to-fine schedule.

One step computes, from one forward pass of the generator, the discriminators' LSGAN
loss on real and (detached) fake pairs and the generator's LSGAN, feature-matching and
optional VGG losses; the discriminators take no gradient from the generator's losses
(their parameters are frozen for that pass). Both are summed into the one loss the
trainer minimises, so each network gets exactly the gradient of its own loss, as the
reference's two optimisers do from the same forward pass.

Stages (:func:`train_pix2pixhd`): G1 alone at the resolution divided by 2^enhancers
(``out_dir/global``), then the full generator at full resolution (``out_dir/enhancer``)
starting from G1's weights and the discriminators, with G1 frozen for the first
``fix_global_iterations`` steps. Each stage resumes from its own checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from ...metrics import batch_psnr
from ...training import Trainer, TrainerSettings, is_main_process, step_rng
from ..datasets import folder_options, resize_maps, sample_batch, synthesis_set, to_model_image, with_label_count
from ..losses import VGGLoss, feature_matching_loss, load_vgg19, lsgan_loss
from ..scenes import colorize_labels
from .model import Pix2PixHD, Pix2PixHDSettings, save_pix2pixhd, size_multiple

__all__ = ["Pix2PixHDTask", "train_pix2pixhd", "synthesis_metrics", "trainer_defaults"]

_EVAL_BATCH = 4


TRAINER_DEFAULTS: dict[str, object] = dict(lr=2e-4, beta1=0.5, schedule="linear", out_dir="runs/pix2pixhd")
"""How pix2pixHD's trainer settings differ from ``TrainerSettings``'s defaults (``pix2pixhd train`` takes them too)."""


def trainer_defaults(**changes) -> TrainerSettings:
    """The reference's optimiser: Adam lr 2e-4, beta1 0.5, constant for half the run then
    linear decay to 0."""
    base = {**TRAINER_DEFAULTS, **changes}
    settings = TrainerSettings(**base)
    return replace(settings, hold=settings.iterations // 2) if "hold" not in changes else settings


def synthesis_metrics(estimate: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean absolute error and PSNR of images in [-1, 1], both measured on [0, 1]."""
    e, h = (estimate.float().clamp(-1, 1) + 1) / 2, (target.float() + 1) / 2
    return {"l1": float((e - h).abs().mean()), "psnr": float(batch_psnr(e, h).mean())}


class Pix2PixHDTask:
    """One stage of pix2pixHD training as a task of the generic trainer.

    Arguments:
        settings: architecture, losses and data.
        stage: 'global' (G1 alone at the resolution divided by 2^enhancers) or 'enhancer'.
        seed: initialisation seed.
        init: the global stage's model, whose G1, discriminators and encoder start the enhancer stage.
    """

    def __init__(self, settings: Pix2PixHDSettings, stage: str = "enhancer", seed: int = 0,
                 init: Pix2PixHD | None = None) -> None:
        if stage not in ("global", "enhancer"):
            raise ValueError(f"stage must be 'global' or 'enhancer', got {stage!r}")
        settings = with_label_count(settings)
        self.settings, self.stage = settings, stage
        self.factor = 2**settings.n_local_enhancers if stage == "global" else 1
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = Pix2PixHD(settings, stage)
        if init is not None:
            self.model.generator.load_global(init.generator)
            self.model.discriminator.load_state_dict(init.discriminator.state_dict())
            if init.encoder is not None and self.model.encoder is not None:
                self.model.encoder.load_state_dict(init.encoder.state_dict())
        # Folders are padded to the finest level's multiple; the global stage then halves them.
        pad_to = size_multiple(settings) if settings.pad else 1
        options = folder_options(settings, size_multiple(settings))
        self.train = synthesis_set(settings.data, "train", settings.label_count, settings.train_scenes,
                                   settings.height, settings.width, pad_to, **options)
        self.test = synthesis_set(settings.data, "test", settings.label_count, settings.test_scenes,
                                  settings.height, settings.width, pad_to, **options)
        self.vgg = VGGLoss(load_vgg19(settings.vgg_weights)) if settings.vgg_weights else None

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> dict:
        label, instance, image = sample_batch(self.train, step_rng(seed, step, rank), self.settings.batch_size,
                                              self.settings.flip)
        label, instance, image = resize_maps(label, instance, image, self.factor)
        return {"label": label, "instance": instance, "image": image, "step": step}

    def loss(self, model: Pix2PixHD, batch: dict, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.settings
        label, instance, real = (batch[k].to(device) for k in ("label", "instance", "image"))
        condition = model.condition(label, instance)
        g_input = condition
        if model.encoder is not None:
            g_input = torch.cat([condition, model.encoder(real, instance)], dim=1)
        freeze_global = self.stage == "enhancer" and batch["step"] < s.fix_global_iterations
        fake = model.generator(g_input, freeze_global=True) if freeze_global else model.generator(g_input)

        discriminator = model.discriminator
        pred_real = discriminator(torch.cat([condition, real], dim=1))
        pred_fake_detached = discriminator(torch.cat([condition, fake.detach()], dim=1))
        d_real, d_fake = lsgan_loss(pred_real, True), lsgan_loss(pred_fake_detached, False)
        discriminator.requires_grad_(False)
        try:
            pred_fake = discriminator(torch.cat([condition, fake], dim=1))
        finally:
            discriminator.requires_grad_(True)
        g_gan = lsgan_loss(pred_fake, True)
        g_feat = s.lambda_feat * feature_matching_loss(pred_fake, pred_real) if s.feature_matching else None
        g_vgg = s.lambda_feat * self.vgg.to(device)(fake, real) if self.vgg is not None else None
        g_l1 = s.lambda_l1 * (fake - real).abs().mean() if s.lambda_l1 else None
        generator_loss = g_gan + sum(x for x in (g_feat, g_vgg, g_l1) if x is not None)
        loss = generator_loss + 0.5 * (d_real + d_fake)
        logs = {"g_gan": g_gan.item(), "d_real": d_real.item(), "d_fake": d_fake.item(),
                "generator": generator_loss.item()}
        if g_feat is not None:
            logs["g_feature_matching"] = g_feat.item()
        if g_vgg is not None:
            logs["g_vgg"] = g_vgg.item()
        if g_l1 is not None:
            logs["g_l1"] = g_l1.item()
        return loss, logs

    def _test_batches(self, device: torch.device, limit: int | None = None):
        count = len(self.test) if limit is None else min(limit, len(self.test))
        for lo in range(0, count, _EVAL_BATCH):
            chunk = [self.test[k] for k in range(lo, min(lo + _EVAL_BATCH, count))]
            if any(c.image is None for c in chunk):
                return
            label = torch.stack([torch.from_numpy(c.label) for c in chunk]).long()
            instance = torch.stack([torch.from_numpy(c.instance) for c in chunk]).long()
            image = torch.stack([to_model_image(c.image) for c in chunk])
            label, instance, image = resize_maps(label, instance, image, self.factor)
            yield label.to(device), instance.to(device), image.to(device)

    def evaluate(self, model: Pix2PixHD, device: torch.device) -> dict[str, float]:
        """L1 and PSNR of the synthesised held-out images to the real ones (with an encoder,
        its features are encoded from the real image: a reconstruction)."""
        totals, count = {"l1": 0.0, "psnr": 0.0}, 0
        for label, instance, image in self._test_batches(device):
            fake = model.generate(label, instance, image=image)
            for k, v in synthesis_metrics(fake, image).items():
                totals[k] += v * len(label)
            count += len(label)
        return {k: v / count for k, v in totals.items()} if count else {}

    def sample_images(self, model: Pix2PixHD, device: torch.device) -> dict[str, torch.Tensor]:
        """Layout, synthesised and real images of the first held-out scenes, one row each."""
        rows = []
        for label, instance, image in self._test_batches(device, limit=2):
            fake = model.generate(label, instance, image=image)
            for k in range(len(label)):
                colours = torch.from_numpy(colorize_labels(label[k].cpu())).permute(2, 0, 1).float() / 255
                rows.append(torch.cat([colours, (fake[k].cpu().clamp(-1, 1) + 1) / 2, (image[k].cpu() + 1) / 2], dim=2))
        return {"layout_generated_real": torch.cat(rows, dim=1)} if rows else {}


def _stage_trainers(settings: Pix2PixHDSettings, trainer: TrainerSettings,
                    global_iterations: int | None) -> dict[str, TrainerSettings]:
    """Each stage's trainer settings by stage name, in training order, each in its own folder
    of ``trainer.out_dir``: the global stage, then the enhancer stage when there are enhancers."""
    out = Path(trainer.out_dir)
    if not settings.n_local_enhancers:
        return {"global": replace(trainer, out_dir=str(out / "global"))}
    steps = trainer.iterations if global_iterations is None else global_iterations
    # The global stage keeps the final stage's proportion of constant learning rate.
    return {"global": replace(trainer, out_dir=str(out / "global"), iterations=steps,
                              hold=steps * trainer.hold // max(1, trainer.iterations)),
            "enhancer": replace(trainer, out_dir=str(out / "enhancer"))}


def train_pix2pixhd(settings: Pix2PixHDSettings, trainer: TrainerSettings, global_iterations: int | None = None,
                    output: str | os.PathLike | None = None) -> dict[str, float]:
    """The staged schedule; returns the last stage's held-out metrics and writes the model
    to ``output`` (default out_dir/pix2pixhd.safetensors). Every stage's folder passes the
    resume rule before the first stage trains, so that a refusal leaves them all as they were.

    Arguments:
        trainer: the final stage's trainer settings (its ``iterations``); ``out_dir`` holds one folder per stage.
        global_iterations: steps of the global stage before the enhancer stage (default: ``trainer.iterations``);
            ignored without enhancers, where G1 trains alone at full resolution.
    """
    settings = with_label_count(settings)
    stages = _stage_trainers(settings, trainer, global_iterations)
    for stage_trainer in stages.values():
        Trainer(stage_trainer, (settings,)).check_folder()
    init = None
    if "enhancer" in stages:
        first = Pix2PixHDTask(settings, "global", seed=trainer.seed)
        Trainer(stages["global"], (first.settings,)).fit(first)
        if is_main_process():
            save_pix2pixhd(first.model.cpu(), Path(stages["global"].out_dir) / "pix2pixhd.safetensors",
                           iterations=stages["global"].iterations)
        init = first.model
    stage = list(stages)[-1]
    last = Pix2PixHDTask(settings, stage, seed=trainer.seed, init=init)
    metrics = Trainer(stages[stage], (last.settings,)).fit(last)
    if is_main_process():
        save_pix2pixhd(last.model.cpu(), Path(output) if output else Path(trainer.out_dir) / "pix2pixhd.safetensors",
                       iterations=trainer.iterations, global_iterations=global_iterations, metrics=metrics)
    return metrics
