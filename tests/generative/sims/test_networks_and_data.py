"""The synthesis network and losses, the class-masked VGG loss from a user's weights file,
and training on a folder in pix2pixHD's layout (no depth order: no ordering loss)."""

import numpy as np
import pytest
import torch

from toolchain_restore.generative.layout import write_layout
from toolchain_restore.generative.losses import VGG19Features
from toolchain_restore.generative.scenes import procedural_split
from toolchain_restore.generative.sims import Sims, SimsTask, SynthesisNet, preset, train_sims, trainer_defaults
from toolchain_restore.generative.sims.losses import ClassMaskedVGGLoss, gradient_loss


@pytest.mark.parametrize("levels, size", [(2, (16, 32)), (3, (32, 64))])
def test_the_synthesis_network_outputs_an_image_and_label_logits(levels, size):
    net = SynthesisNet(7, ngf=4, levels=levels)
    image, logits = net(torch.randn(2, 7 + 4, *size))
    assert image.shape == (2, 3, *size) and logits.shape == (2, 7, *size) and image.abs().max() <= 1
    with pytest.raises(ValueError, match=f"multiples of {2**levels}"):
        net(torch.randn(1, 11, size[0] + 2, size[1]))


def test_the_ablation_ignores_the_canvas():
    torch.manual_seed(0)
    model = Sims(preset("cpu", label_count=7, ngf=4, levels=2, retrieval=False)).eval()
    label = torch.randint(0, 7, (1, 16, 32))
    a, _ = model(label, torch.rand(1, 3, 16, 32), torch.ones(1, 1, 16, 32))
    b, _ = model(label, torch.zeros(1, 3, 16, 32), torch.zeros(1, 1, 16, 32))
    assert torch.equal(a, b)


def test_gradient_loss_is_zero_only_for_equal_detail():
    x = torch.rand(1, 3, 32, 32)
    assert float(gradient_loss(x, x)) == 0
    assert float(gradient_loss(x, x + 0.3)) == pytest.approx(0, abs=1e-6)  # a constant shift has no gradient
    assert float(gradient_loss(x, torch.zeros_like(x))) > 0


def test_class_masked_vgg_loss_counts_each_class_by_its_area():
    torch.manual_seed(0)
    loss = ClassMaskedVGGLoss(VGG19Features())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    label = torch.zeros(1, 32, 32, dtype=torch.long)
    label[:, 16:] = 1
    assert float(loss(x, x, label, 3)) == 0
    assert float(loss(x, x.flip(-1), label, 3)) > 0


def test_trains_with_the_class_masked_vgg_loss_from_a_users_file_and_on_a_folder(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vgg = {f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}
    save_file(vgg, str(tmp_path / "vgg19.safetensors"))
    write_layout(tmp_path / "data", "train", procedural_split("train", 3, 32, 64))
    write_layout(tmp_path / "data", "test", procedural_split("test", 1, 32, 64))
    settings = preset("cpu", data=str(tmp_path / "data"), label_count=7, ngf=4, levels=2,
                      vgg_weights=str(tmp_path / "vgg19.safetensors"))
    task = SimsTask(settings)
    assert task.train_pairs is None and task.test_pairs is None  # folders hold no depth order
    batch = task.make_batch(0, 0, 1, 0)
    assert "order" not in batch and "align" in batch
    _, logs = task.loss(task.model, batch, torch.device("cpu"))
    assert logs["vgg"] > 0
    metrics = train_sims(settings, trainer_defaults(out_dir=str(tmp_path / "run"), iterations=1, eval_every=1,
                                                    checkpoint_every=1, progress=False))
    assert {"l1", "psnr"} <= set(metrics) and np.isfinite(metrics["l1"])
    with pytest.raises(FileNotFoundError, match="no VGG-19 weights"):
        SimsTask(preset("cpu", data=str(tmp_path / "data"), label_count=7, ngf=4, levels=2,
                        vgg_weights=str(tmp_path / "missing.pth")))
