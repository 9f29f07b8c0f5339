import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toolchain_restore.tools.training import ToolTrainingSettings, ToolTrainingTask, train_toolbox
from toolchain_restore.training import Trainer, TrainerSettings, lr_at

TINY = dict(tools=[5, 9], batch_size=2, patch_size=24, eval_patches=4)


def trainer_settings(out_dir, **kw):
    base = dict(out_dir=str(out_dir), iterations=6, lr=1e-3, checkpoint_every=3, eval_every=3, log_every=1, progress=False)
    base.update(kw)
    return TrainerSettings(**base)


class CrashAt:
    """Wraps a task so that its loss raises once at a given step, like a killed process."""

    def __init__(self, task, step):
        self.task, self.crash_step, self.calls = task, step, 0
        self.model = task.model

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, model, batch, device):
        if self.calls == self.crash_step:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        return self.task.loss(model, batch, device)


def test_resumed_run_reaches_the_same_weights(tmp_path):
    straight = ToolTrainingTask(ToolTrainingSettings(**TINY))
    Trainer(trainer_settings(tmp_path / "a")).fit(straight)

    interrupted = ToolTrainingTask(ToolTrainingSettings(**TINY))
    with pytest.raises(KeyboardInterrupt):
        Trainer(trainer_settings(tmp_path / "b")).fit(CrashAt(interrupted, 4))
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 3
    resumed = ToolTrainingTask(ToolTrainingSettings(**TINY))
    Trainer(trainer_settings(tmp_path / "b")).fit(resumed)

    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_tensorboard_and_outputs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = train_toolbox(ToolTrainingSettings(**TINY), trainer_settings(tmp_path))
    assert set(metrics) == {"psnr_gain/tool05", "psnr_gain/tool09", "psnr_gain/mean"}
    assert (tmp_path / "toolbox.safetensors").is_file()
    assert (tmp_path / "settings.json").is_file() and (tmp_path / "metrics.json").is_file()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()
    assert {"losses/loss", "losses/mse/tool05", "eval/psnr_gain/tool09", "charts/learning_rate"} <= set(tags["scalars"])
    assert any(t.startswith("images/") for t in tags["images"])
    assert "settings/text_summary" in tags["tensors"]


def test_frozen_tools_stay_unchanged(tmp_path):
    task = ToolTrainingTask(ToolTrainingSettings(**TINY))
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    Trainer(trainer_settings(tmp_path, iterations=2)).fit(task)
    after = task.model.state_dict()
    assert torch.equal(before["tools.0.body.0.weight"], after["tools.0.body.0.weight"])
    assert not torch.equal(before["tools.4.body.0.weight"], after["tools.4.body.0.weight"])


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot resume"):
        Trainer(trainer_settings(tmp_path)).fit(ToolTrainingTask(ToolTrainingSettings(**TINY)))


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    Trainer(trainer_settings(tmp_path, iterations=1)).fit(ToolTrainingTask(ToolTrainingSettings(**TINY)))
    other = ToolTrainingTask(ToolTrainingSettings(**{**TINY, "tools": [1]}))
    with pytest.raises(RuntimeError, match="does not fit"):
        Trainer(trainer_settings(tmp_path, iterations=3)).fit(other)


@pytest.mark.parametrize(
    "schedule, step, expected",
    [("constant", 5, 1e-3), ("step", 10, 2.5e-4), ("cosine", 0, 1e-3), ("cosine", 20, 0.0), ("linear", 10, 5e-4)],
)
def test_learning_rate_schedules(schedule, step, expected):
    s = TrainerSettings(iterations=20, lr=1e-3, schedule=schedule, lr_step_every=5, lr_gamma=0.5)
    assert lr_at(step, s) == pytest.approx(expected)


@pytest.mark.parametrize("step, expected", [(0, 1e-3), (9, 1e-3), (10, 1e-3), (15, 5e-4), (20, 0.0)])
def test_linear_decay_after_a_hold_as_pix2pixhd(step, expected):
    s = TrainerSettings(iterations=20, lr=1e-3, schedule="linear", hold=10)
    assert lr_at(step, s) == pytest.approx(expected)


def test_adam_beta1_is_a_setting(tmp_path):
    optimizer = Trainer(trainer_settings(tmp_path, beta1=0.5))._make_optimizer(torch.nn.Linear(2, 2))
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)


def test_bf16_autocast_trains_and_resumes_on_cpu(tmp_path):
    seen = []

    class Recording(ToolTrainingTask):
        def loss(self, model, batch, device):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return super().loss(model, batch, device)

    task = Recording(ToolTrainingSettings(**TINY))
    before = task.model.state_dict()["tools.4.body.0.weight"].clone()
    Trainer(trainer_settings(tmp_path, precision="bf16", iterations=3)).fit(task)
    assert seen == [torch.bfloat16] * 3
    assert not torch.equal(before, task.model.state_dict()["tools.4.body.0.weight"])
    Trainer(trainer_settings(tmp_path, precision="bf16", iterations=4)).fit(task)
    assert len(seen) == 4
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16.*CUDA"):
            Trainer(trainer_settings(tmp_path / "fp16", precision="fp16")).fit(ToolTrainingTask(ToolTrainingSettings(**TINY)))


def test_unknown_optimizer_and_missing_cuda(tmp_path):
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(trainer_settings(tmp_path, optimizer="lbfgs")).fit(ToolTrainingTask(ToolTrainingSettings(**TINY)))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            Trainer(trainer_settings(tmp_path, device="cuda")).fit(ToolTrainingTask(ToolTrainingSettings(**TINY)))


def test_bad_tool_numbers():
    with pytest.raises(ValueError, match="tools"):
        ToolTrainingTask(ToolTrainingSettings(tools=[0, 13]))


@pytest.mark.slow
def test_torchrun_two_cpu_processes_on_gloo(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        "-m", "toolchain_restore.cli", "train-tools", "--tools", "5", "9", "--iterations", "3", "--batch-size", "2",
        "--patch-size", "24", "--eval-patches", "4", "--eval-every", "3", "--checkpoint-every", "3",
        "--device", "cpu", "--progress", "false", "--out-dir", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    assert (out / "toolbox.safetensors").is_file()
    assert "psnr_gain/tool05" in done.stdout


def cli_train(out_dir, iterations=40):
    return [
        sys.executable, "-m", "toolchain_restore.cli", "train-tools", "--tools", "6", "--iterations", str(iterations),
        "--batch-size", "2", "--patch-size", "24", "--eval-patches", "4", "--eval-every", "100", "--checkpoint-every", "2",
        "--device", "cpu", "--progress", "false", "--prefetch", "1", "--out-dir", str(out_dir),
    ]


@pytest.mark.slow
def test_killed_command_resumes_to_the_same_toolbox(tmp_path):
    import signal
    import time

    from toolchain_restore.tools import Toolbox

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cli_train(tmp_path / "straight"), check=True, env=env, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    process = subprocess.Popen(cli_train(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if checkpoint.is_file() and torch.load(checkpoint, weights_only=True)["step"] >= 4:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    reached = torch.load(checkpoint, weights_only=True)["step"]
    assert 4 <= reached < 40, "the run was not killed half-way"
    assert not (killed / "toolbox.safetensors").exists()

    subprocess.run(cli_train(killed), check=True, env=env, capture_output=True, timeout=300)
    a = Toolbox.load(tmp_path / "straight" / "toolbox.safetensors").state_dict()
    b = Toolbox.load(killed / "toolbox.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
