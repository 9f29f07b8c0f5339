"""Device and precision resolution: what "auto" chooses, and why."""

import warnings

import pytest
import torch

from toolchain_restore import load_toolbox, runtime
from toolchain_restore.runtime import PRECISION_ENV, PrecisionChoice
from toolchain_restore.training import TrainerSettings


@pytest.fixture
def fresh_auto(monkeypatch):
    """"auto" decided anew, without the suite's pin to fp32."""
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    runtime._auto_cpu.cache_clear()
    yield monkeypatch
    runtime._auto_cpu.cache_clear()


def _no_measuring():
    raise AssertionError("auto measured where the CPU flags already decide")


def test_auto_is_fp32_without_native_bf16_and_does_not_measure(fresh_auto):
    fresh_auto.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    fresh_auto.setattr(runtime, "measure_bf16_speedup", _no_measuring)
    choice = runtime.resolve_precision("auto", "cpu")
    assert choice.precision == "fp32"
    assert "no native bf16" in choice.reason


@pytest.mark.parametrize("speedup, expected", [(0.9, "fp32"), (1.1, "fp32"), (2.4, "bf16")])
def test_auto_measures_where_the_cpu_has_bf16(fresh_auto, speedup, expected):
    fresh_auto.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))
    fresh_auto.setattr(runtime, "measure_bf16_speedup", lambda: speedup)
    choice = runtime.auto_precision("cpu")
    assert choice.precision == expected
    assert f"{speedup:.2f}x" in choice.reason


def test_auto_is_decided_once_per_process(fresh_auto):
    calls = []
    fresh_auto.setattr(runtime, "cpu_flags", lambda: None)  # flags unreadable: measure
    fresh_auto.setattr(runtime, "measure_bf16_speedup", lambda: calls.append(1) or 3.0)
    assert [runtime.auto_precision("cpu").precision for _ in range(3)] == ["bf16"] * 3
    assert len(calls) == 1


def test_auto_on_this_machine_follows_its_flags(fresh_auto):
    flags = runtime.cpu_flags()
    choice = runtime.auto_precision("cpu")
    if flags is not None and not any(f in flags for f in runtime.BF16_CPU_FLAGS):
        assert choice.precision == "fp32"
    assert choice.precision in ("fp32", "bf16")


def test_the_environment_variable_pins_auto(fresh_auto):
    fresh_auto.setenv(PRECISION_ENV, "bf16")
    assert runtime.resolve_precision("auto", "cpu") == PrecisionChoice("bf16", f"set by {PRECISION_ENV}")
    fresh_auto.setenv(PRECISION_ENV, "fast")
    with pytest.raises(ValueError, match=PRECISION_ENV):
        runtime.resolve_precision("auto", "cpu")


@pytest.mark.parametrize("bad", ["float32", "half", "", None, 16])
def test_unknown_precisions_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        runtime.check_precision(bad)
    with pytest.raises(ValueError, match="precision must be one of"):
        load_toolbox(precision=bad if bad is not None else "none")


def test_fp16_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        runtime.resolve_precision("fp16", "cpu")


def test_fp32_switches_an_outer_autocast_off():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.rand(1, 3, 8, 8)
    with runtime.autocast("bf16", "cpu"):
        assert conv(x).dtype == torch.bfloat16
        with runtime.autocast("fp32", "cpu"):
            assert conv(x).dtype == torch.float32


def test_with_precision_shares_the_weights():
    toolbox = load_toolbox(precision="fp32")
    other = toolbox.with_precision("bf16")
    assert other is not toolbox and other.precision == "bf16" and toolbox.precision == "fp32"
    assert other.tools[0].body[0].weight is toolbox.tools[0].body[0].weight
    assert toolbox.with_precision("fp32") is toolbox


def test_summary_names_the_choice_and_the_cpu():
    line = runtime.precision_summary("fp32", "cpu")
    assert line.startswith("precision fp32 -> fp32 (asked for) on cpu")
    assert "torch CPU capability" in line and "native bf16 flags" in line


def test_trainer_amp_is_a_deprecated_spelling_of_precision():
    with pytest.warns(DeprecationWarning, match="precision"):
        assert TrainerSettings(amp="off").precision == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert TrainerSettings(amp="bf16").precision == "bf16"
        with pytest.raises(ValueError, match="amp must be"):
            TrainerSettings(amp="fp8")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainerSettings(precision="fp64")
