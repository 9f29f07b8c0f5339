"""The shared run component (directory, settings check, checkpoints with random state,
ranks), the callbacks, and resuming checkpoints written before them."""

import json
import random
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from toolchain_restore.config import TrainingRunSettings
from toolchain_restore.nn import DCNetTrainingAids
from toolchain_restore.tools.training import ToolTrainingSettings, ToolTrainingTask
from toolchain_restore.training import (Callback, Distributed, LearningRateSchedule, ResumeError, Run, Trainer,
                                        TrainerSettings, settings_callbacks)
from toolchain_restore.training.run import random_state, restore_random_state

TINY = dict(tools=[5, 9], batch_size=2, patch_size=24, eval_patches=4)

OLD_TRAINER_CHECKPOINT_KEYS = {"step", "model", "optimizer", "grad_scaler", "torch_rng", "cuda_rng", "settings"}
"""What training/trainer.py wrote before the Run existed: ``step`` (optimiser steps done),
``model`` and ``optimizer`` state dicts, ``grad_scaler`` (empty when fp16 is off),
``torch_rng`` (torch.get_rng_state()), ``cuda_rng`` ([] without CUDA) and ``settings``
(the TrainerSettings as a JSON string). No Python or numpy random state."""


def trainer_settings(out_dir, **kw):
    base = dict(out_dir=str(out_dir), iterations=6, lr=1e-3, checkpoint_every=3, eval_every=3, log_every=1,
                progress=False, device="cpu", warmup=2)
    base.update(kw)
    return TrainerSettings(**base)


class StopAt:
    """Wraps a task so that its loss raises at a given call, like a killed process."""

    def __init__(self, task, calls):
        self.task, self.stop, self.calls, self.model = task, calls, 0, task.model

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, model, batch, device):
        if self.calls == self.stop:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        return self.task.loss(model, batch, device)


def test_a_checkpoint_in_the_old_format_resumes_to_the_same_weights(tmp_path):
    straight = ToolTrainingTask(ToolTrainingSettings(**TINY))
    Trainer(trainer_settings(tmp_path / "straight")).fit(straight)

    killed = ToolTrainingTask(ToolTrainingSettings(**TINY))
    with pytest.raises(KeyboardInterrupt):
        Trainer(trainer_settings(tmp_path / "old")).fit(StopAt(killed, 4))
    path = tmp_path / "old" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    assert OLD_TRAINER_CHECKPOINT_KEYS | {"python_rng", "numpy_rng", "cpu_seconds", "run_settings"} == set(state)
    assert state["step"] == 3 and isinstance(state["settings"], str)
    torch.save({k: state[k] for k in OLD_TRAINER_CHECKPOINT_KEYS}, path)  # as the code before the Run wrote it

    resumed = ToolTrainingTask(ToolTrainingSettings(**TINY))
    Trainer(trainer_settings(tmp_path / "old")).fit(resumed)
    assert torch.load(path, weights_only=True)["step"] == 6
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_random_state_comes_back_and_loads_weights_only(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(random_state(), tmp_path / "state.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    restore_random_state(torch.load(tmp_path / "state.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected

    # A checkpoint without python_rng / numpy_rng (the old format) leaves those generators alone.
    random.seed(5), np.random.seed(5)
    before = (random.getstate(), np.random.get_state()[1].copy())
    restore_random_state({"torch_rng": torch.get_rng_state(), "cuda_rng": []})
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])


@dataclass
class LoopSettings(TrainingRunSettings):
    """A loop's settings for the rule's tests: its length is total_steps."""

    total_steps: int = 10
    gamma: float = 0.9
    eval_every: int = 5

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"eval_every"})
    EXTENT: ClassVar[str] = "total_steps"


@dataclass
class TaskSettings:
    """A task's settings beside the loop's."""

    width: int = 4


def test_settings_check_on_resume(tmp_path, capsys):
    saved = (LoopSettings(out_dir=str(tmp_path)), TaskSettings())
    Run(tmp_path, settings=saved).save_checkpoint({"step": 10})

    def load(*settings):
        return Run(tmp_path, settings=settings).load_checkpoint("cpu")

    assert load(LoopSettings(eval_every=7, device="cpu", out_dir="moved"), TaskSettings())  # what may change
    with pytest.raises(ResumeError, match=r"other settings: --gamma: 0.9 -> 0.5; use --out-dir elsewhere, or "
                                          r"--overwrite"):
        load(LoopSettings(gamma=0.5), TaskSettings())
    with pytest.raises(ResumeError, match=r"--total-steps: 10 -> 8 \(fewer than the run's; 10 or more extends it\); "
                                          r"--width: 4 -> 8"):
        load(LoopSettings(total_steps=8), TaskSettings(width=8))
    capsys.readouterr()
    load(LoopSettings(total_steps=20), TaskSettings())
    assert capsys.readouterr().out == f"extending run {tmp_path} from 10 to 20 steps\n"


def test_old_checkpoints_are_checked_against_what_they_kept(tmp_path):
    # The trainer's checkpoint kept its own settings as a JSON string, settings.json the others by class name.
    Run(tmp_path).save_checkpoint({"step": 3, "settings": json.dumps({"gamma": 0.9, "total_steps": 6})})
    (tmp_path / "settings.json").write_text(json.dumps({"TaskSettings": {"width": 4}, "runtime": {"device": "cpu"}}))
    with pytest.raises(ResumeError, match=r"other settings: --width: 4 -> 8; use"):
        Run(tmp_path, settings=(LoopSettings(total_steps=6), TaskSettings(width=8))).load_checkpoint("cpu")
    # Fields a record lacks count as their defaults; a checkpoint without settings compares only its step.
    assert Run(tmp_path, settings=(LoopSettings(total_steps=6), TaskSettings())).load_checkpoint("cpu")
    (tmp_path / "settings.json").unlink()
    Run(tmp_path).save_checkpoint({"step": 3})
    assert Run(tmp_path, settings=(LoopSettings(total_steps=3, gamma=0.1),)).load_checkpoint("cpu")
    with pytest.raises(ResumeError, match=r"--total-steps: 3 -> 2"):
        Run(tmp_path, settings=(LoopSettings(total_steps=2),)).load_checkpoint("cpu")
    # Without settings nothing is compared.
    assert Run(tmp_path).load_checkpoint("cpu")["step"] == 3


def test_resume_off_refuses_a_checkpoint_and_overwrite_deletes_the_run(tmp_path):
    run = Run(tmp_path)
    with run:
        run.write_settings({"a": 1})
        run.open_writer(0, "settings", "precision")
        run.save_checkpoint({"step": 1})
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("the user's")
    with pytest.raises(ResumeError, match=r"holds a run \(checkpoint.pt\) and --resume is false; use --out-dir"):
        Run(tmp_path, resume=False)
    with pytest.raises(ResumeError, match="holds a run"):
        Run.check_folder(tmp_path, (LoopSettings(),), resume=False)
    fresh = Run(tmp_path, resume=False, overwrite=True)
    assert not fresh.has_checkpoint and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_damaged_or_unfitting_checkpoints_are_clear_errors(tmp_path):
    run = Run(tmp_path)
    assert not run.has_checkpoint
    run.checkpoint_path.write_bytes(b"garbage")
    run = Run(tmp_path)
    assert run.has_checkpoint
    with pytest.raises(ResumeError, match="(?s)unreadable.*delete it, or pass --overwrite"):
        run.load_checkpoint("cpu")
    run.save_checkpoint({"model": torch.nn.Linear(2, 2).state_dict()})
    state = run.load_checkpoint("cpu")
    with pytest.raises(RuntimeError, match="does not fit"):
        run.restore(state, {"model": torch.nn.Linear(3, 2)})
    with pytest.raises(RuntimeError, match="does not fit"):
        run.restore(state, {"optimizer": torch.nn.Linear(2, 2)})  # a part the checkpoint lacks
    run.restore(state, {"model": torch.nn.Linear(2, 2)}, optional={"grad_scaler": torch.amp.GradScaler("cpu")})


def test_only_rank_zero_writes(tmp_path):
    other = Run(tmp_path, distributed=Distributed(rank=1, world_size=2, local_rank=1))
    assert not other.is_main
    other.write_settings({"a": 1})
    other.open_writer(0, "settings", "precision").add_scalar("x", 1.0, 0)
    other.save_checkpoint({"step": 1})
    other.progress_bar(10, 0, "bar").update(1)
    other.close()
    assert list(tmp_path.iterdir()) == []

    main = Run(tmp_path, distributed=Distributed())
    with main:
        main.write_settings({"a": 1})
        main.open_writer(0, "settings", "precision")
        main.save_checkpoint({"step": 1})
    assert json.loads(main.settings_path.read_text()) == {"a": 1}
    assert main.checkpoint_path.is_file() and any(p.name.startswith("events.out") for p in tmp_path.iterdir())


def test_step_schedule_is_the_dqn_halving():
    schedule = LearningRateSchedule(lr=1e-4, kind="step", iterations=100, lr_min=2.5e-5, step_every=10, gamma=0.5)
    assert [schedule.at(step) for step in (0, 9, 10, 25, 1000)] == [1e-4, 1e-4, 5e-5, 2.5e-5, 2.5e-5]
    optimizer = torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    assert schedule.apply(optimizer, 10) == 5e-5 and optimizer.param_groups[0]["lr"] == 5e-5


class Recorder(Callback):
    """Records the hooks called and adds a constant to the loss."""

    def __init__(self):
        self.calls = []

    def on_train_start(self, state):
        self.calls.append(("start", state.step))

    def on_loss(self, state, loss):
        state.logs["extra"] = 1.0
        self.calls.append(("loss", state.step))
        return loss + 1.0

    def on_step_end(self, state):
        self.calls.append(("step", state.step))

    def on_evaluate(self, state):
        self.calls.append(("evaluate", state.step, sorted(state.metrics)))

    def on_train_end(self, state):
        self.calls.append(("end", state.step))


def test_trainer_calls_the_hooks_in_order(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recorder = Recorder()
    trainer = Trainer(trainer_settings(tmp_path, iterations=4, eval_every=2, checkpoint_every=4), callbacks=(recorder,))
    trainer.fit(ToolTrainingTask(ToolTrainingSettings(**TINY)))
    metrics = ["psnr_gain/mean", "psnr_gain/tool05", "psnr_gain/tool09"]
    assert recorder.calls == [("start", 0), ("loss", 0), ("step", 1), ("loss", 1), ("step", 2), ("evaluate", 2, metrics),
                              ("loss", 2), ("step", 3), ("loss", 3), ("step", 4), ("evaluate", 4, metrics), ("end", 4)]
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert "losses/extra" in events.Tags()["scalars"]
    # The logged loss is what was minimised: the task's MSEs plus the callback's 1.
    loss, mse5, mse9 = (events.Scalars(t)[-1].value for t in ("losses/loss", "losses/mse/tool05", "losses/mse/tool09"))
    assert loss == pytest.approx(mse5 + mse9 + 1.0, rel=1e-5)


def test_settings_attach_the_dcnet_aids():
    assert settings_callbacks(TrainerSettings()) == []
    (aids,) = settings_callbacks(TrainerSettings(filter_projection_every=100, orthogonality_weight=1e-5))
    assert isinstance(aids, DCNetTrainingAids)
    assert (aids.filter_projection_every, aids.orthogonality_weight) == (100, 1e-5)
    (only_projection,) = settings_callbacks(TrainerSettings(filter_projection_every=10))
    assert only_projection.orthogonality_weight == 0.0


def test_cpu_time_is_kept_across_resumes(tmp_path):
    first = Run(tmp_path)
    sum(i * i for i in range(300_000))  # some CPU work
    spent = first.cpu_seconds
    assert spent > 0
    first.save_checkpoint({"settings": "{}"})
    saved = torch.load(first.checkpoint_path, weights_only=True)["cpu_seconds"]
    assert saved >= spent
    second = Run(tmp_path)
    assert second.cpu_seconds < saved  # a fresh process counts from zero until it resumes
    second.load_checkpoint("cpu")
    assert second.cpu_seconds >= saved
