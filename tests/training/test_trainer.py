import os
import signal
import socket
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
    """Wraps a task so that its loss raises once at a given step (None: never), like a killed
    process, and counts the steps it trained."""

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


@pytest.mark.slow
def test_resumed_run_reaches_the_same_weights(tmp_path):
    straight = ToolTrainingTask(ToolTrainingSettings(**TINY))
    Trainer(trainer_settings(tmp_path / "a")).fit(straight)

    interrupted = ToolTrainingTask(ToolTrainingSettings(**TINY))
    with pytest.raises(KeyboardInterrupt):
        Trainer(trainer_settings(tmp_path / "b")).fit(CrashAt(interrupted, 4))
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 3
    resumed = CrashAt(ToolTrainingTask(ToolTrainingSettings(**TINY)), step=None)
    Trainer(trainer_settings(tmp_path / "b")).fit(resumed)
    assert resumed.calls == 6 - 3  # it went on from the checkpoint, not from the start

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


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")


@NO_CUDA
def test_fp16_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        Trainer(trainer_settings(tmp_path, precision="fp16")).fit(ToolTrainingTask(ToolTrainingSettings(**TINY)))


def test_unknown_optimizer_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(trainer_settings(tmp_path, optimizer="lbfgs")).fit(ToolTrainingTask(ToolTrainingSettings(**TINY)))


@NO_CUDA
def test_cuda_device_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="CUDA"):
        Trainer(trainer_settings(tmp_path, device="cuda")).fit(ToolTrainingTask(ToolTrainingSettings(**TINY)))


def test_bad_tool_numbers():
    with pytest.raises(ValueError, match="tools"):
        ToolTrainingTask(ToolTrainingSettings(tools=[0, 13]))


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's choice for port 0), so that parallel
    runs and other programs on the machine do not collide on a fixed one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train_tools(out, iterations):
    """``train-tools`` in two CPU processes started by torchrun."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()),
        "-m", "toolchain_restore.cli", "train-tools", "--tools", "5", "9", "--iterations", str(iterations),
        "--batch-size", "2", "--patch-size", "24", "--eval-patches", "4", "--eval-every", "3",
        "--checkpoint-every", "3", "--device", "cpu", "--progress", "false", "--out-dir", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_on_gloo(tmp_path):
    out = tmp_path / "ddp"
    done = torchrun_train_tools(out, 3)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    assert (out / "toolbox.safetensors").is_file()
    assert done.stdout.count("psnr_gain/tool05") == 1  # rank 0 alone prints the summary
    extended = torchrun_train_tools(out, 4)
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert extended.stdout.count(f"extending run {out} from 3 to 4 steps") == 1
    assert extended.stdout.count("psnr_gain/tool05") == 1


ITERATIONS, CHECKPOINT_EVERY, KILLED_AT = 10, 2, 5

# ``train-tools`` that counts the steps it trains and, given TRAIN_TOOLS_KILL_AT = n, SIGKILLs
# itself when asked for step n + 1's loss: steps 1..n are trained and the last checkpoint is
# of step n rounded down to --checkpoint-every, however fast the machine is.
COUNTED_TRAIN_TOOLS = """
import atexit, os, signal, sys
from toolchain_restore.cli import main
from toolchain_restore.tools.training import ToolTrainingTask

loss, calls, kill_at = ToolTrainingTask.loss, [], int(os.environ.get("TRAIN_TOOLS_KILL_AT", -1))
stop_at, stop_signal = int(os.environ.get("TRAIN_TOOLS_STOP_AT", -1)), os.environ.get("TRAIN_TOOLS_STOP_SIGNAL")
atexit.register(lambda: print(f"trained steps: {len(calls)}"))
# As in a terminal's foreground, even where the test runner was started with SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)

def counted_loss(self, model, batch, device):
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    if len(calls) == stop_at:
        os.kill(os.getpid(), getattr(signal, stop_signal))
    calls.append(None)
    return loss(self, model, batch, device)

ToolTrainingTask.loss = counted_loss
sys.exit(main(sys.argv[1:]))
"""


def counted_train_tools(out_dir, kill_at=None, stop_at=None, stop_signal="SIGINT"):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kill_at is not None:
        env["TRAIN_TOOLS_KILL_AT"] = str(kill_at)
    if stop_at is not None:
        env.update(TRAIN_TOOLS_STOP_AT=str(stop_at), TRAIN_TOOLS_STOP_SIGNAL=stop_signal)
    return subprocess.run([sys.executable, "-c", COUNTED_TRAIN_TOOLS, *train_tools_args(out_dir)], env=env,
                          capture_output=True, text=True, timeout=300)


def train_tools_args(out_dir):
    return [
        "train-tools", "--tools", "6", "--iterations", str(ITERATIONS), "--batch-size", "2", "--patch-size", "24",
        "--eval-patches", "4", "--eval-every", "100", "--checkpoint-every", str(CHECKPOINT_EVERY), "--device", "cpu",
        "--progress", "false", "--prefetch", "1", "--out-dir", str(out_dir),
    ]


@pytest.mark.slow
def test_killed_command_resumes_to_the_same_toolbox(tmp_path):
    from toolchain_restore.tools import Toolbox

    straight = subprocess.run([sys.executable, "-m", "toolchain_restore.cli", *train_tools_args(tmp_path / "straight")],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = tmp_path / "killed"
    process = counted_train_tools(killed, kill_at=KILLED_AT)
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    saved = KILLED_AT - KILLED_AT % CHECKPOINT_EVERY  # step 5 trained, lost with the process
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["step"] == saved
    assert not (killed / "toolbox.safetensors").exists()

    resumed = counted_train_tools(killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"trained steps: {ITERATIONS - saved}\n" in resumed.stdout  # from the checkpoint, not from the start
    a = Toolbox.load(tmp_path / "straight" / "toolbox.safetensors").state_dict()
    b = Toolbox.load(killed / "toolbox.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_the_run_with_one_line_and_a_checkpoint_of_the_step_it_was_in(tmp_path, stop_signal):
    from toolchain_restore.tools import Toolbox

    straight = counted_train_tools(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]

    stopped = tmp_path / "stopped"
    process = counted_train_tools(stopped, stop_at=KILLED_AT, stop_signal=stop_signal)
    assert process.returncode == 2, process.stderr[-3000:]
    assert process.stderr.strip().splitlines() == [
        f"error: {stopped}: stopped by {stop_signal} after step {KILLED_AT + 1}; its checkpoint is written there, "
        "and the same command resumes from it"]
    # The step the signal came in finishes and is kept: nothing trained is lost.
    assert torch.load(stopped / "checkpoint.pt", weights_only=True)["step"] == KILLED_AT + 1

    resumed = counted_train_tools(stopped)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"trained steps: {ITERATIONS - KILLED_AT - 1}\n" in resumed.stdout
    a = Toolbox.load(tmp_path / "straight" / "toolbox.safetensors").state_dict()
    b = Toolbox.load(stopped / "toolbox.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
