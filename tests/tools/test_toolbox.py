"""The 12 tools: specs, sizes, multiply-adds, application, weights files, training params."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from toolchain_restore.serialization import WeightsError, save_weights
from toolchain_restore.tools.architectures import LargeTool, SmallTool
from toolchain_restore.tools.data import ROBUST_JPEG_MIN, ROBUST_NOISE_MAX, tool_params
from toolchain_restore.tools.specs import MACS_PER_PIXEL, NUM_TOOLS, PARAMETERS, TOOL_SPECS
from toolchain_restore.tools.toolbox import WEIGHTS_KIND, Toolbox

# The table of the reference: (distortion, band as [low, high], size) for tools 1..12.
REFERENCE_TOOLS = [
    ("blur", (0.0, 1.25), "small"),
    ("blur", (1.25, 2.5), "small"),
    ("blur", (2.5, 3.75), "large"),
    ("blur", (3.75, 5.0), "large"),
    ("noise", (0.0, 12.5), "small"),
    ("noise", (12.5, 25.0), "small"),
    ("noise", (25.0, 37.5), "large"),
    ("noise", (37.5, 50.0), "large"),
    ("jpeg", (60.0, 100.0), "small"),
    ("jpeg", (35.0, 60.0), "small"),
    ("jpeg", (20.0, 35.0), "large"),
    ("jpeg", (10.0, 20.0), "large"),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toolbox():
    torch.manual_seed(0)
    return Toolbox().eval()


@pytest.fixture(scope="module")
def busy_toolbox():
    """A toolbox whose tools change their input noticeably (last layers re-randomised)."""
    torch.manual_seed(1)
    box = Toolbox().eval()
    with torch.no_grad():
        for tool in box.tools:
            last = tool.body[-1] if isinstance(tool, SmallTool) else tool.tail
            last.weight.normal_(0.0, 0.02)
            last.bias.normal_(0.0, 0.05)
    return box


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())


def conv_macs_per_pixel(module):
    total = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            assert layer.stride == (1, 1)
            kh, kw = layer.kernel_size
            total += kh * kw * layer.in_channels * layer.out_channels // layer.groups
    return total


# ---------------------------------------------------------------- specs and sizes


def test_specs_follow_the_reference_table():
    assert NUM_TOOLS == 12 == len(TOOL_SPECS)
    for i, (spec, (distortion, band, size)) in enumerate(zip(TOOL_SPECS, REFERENCE_TOOLS)):
        assert spec.index == i
        assert spec.distortion == distortion
        assert tuple(sorted(spec.band)) == band
        assert spec.size == size
        assert spec.mid == pytest.approx(sum(band) / 2)
    names = [s.name for s in TOOL_SPECS]
    assert len(set(names)) == 12


@pytest.mark.parametrize("cls, expected", [(SmallTool, 21_827), (LargeTool, 50_851)])
def test_tool_parameter_counts(cls, expected):
    assert count_parameters(cls()) == expected


def test_toolbox_parameter_count(toolbox):
    assert count_parameters(toolbox) == 436_068
    assert PARAMETERS == {"small": 21_827, "large": 50_851}
    for spec, tool in zip(TOOL_SPECS, toolbox.tools):
        assert isinstance(tool, SmallTool if spec.size == "small" else LargeTool)
        assert count_parameters(tool) == PARAMETERS[spec.size]
    assert len(toolbox) == 12


@pytest.mark.parametrize("i", range(12))
@pytest.mark.parametrize("height, width", [(63, 63), (1, 1), (17, 23), (480, 640)])
def test_macs(toolbox, i, height, width):
    spec = TOOL_SPECS[i]
    from_layers = conv_macs_per_pixel(toolbox.tools[i])
    assert from_layers == MACS_PER_PIXEL[spec.size]
    assert from_layers == {"small": 21_776, "large": 50_560}[spec.size]
    assert spec.macs_per_pixel == from_layers
    assert toolbox.macs(i, height, width) == from_layers * height * width


# ---------------------------------------------------------------- applying tools


@pytest.mark.parametrize("i", range(12))
@pytest.mark.parametrize("shape", [(1, 3, 17, 23), (2, 3, 63, 63), (1, 3, 5, 40)])
def test_any_spatial_size_keeps_the_shape(busy_toolbox, i, shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(i))
    with torch.no_grad():
        y = busy_toolbox(x, i)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("i", range(12))
def test_fresh_tool_starts_near_identity(i):
    # The last layer's bias is zero and its weights are scaled down, so a freshly built
    # tool changes its input very little (see architectures._start_near_identity).
    torch.manual_seed(100 + i)
    box = Toolbox().eval()
    tool = box.tools[i]
    last = tool.body[-1] if isinstance(tool, SmallTool) else tool.tail
    assert torch.count_nonzero(last.bias) == 0
    x = torch.rand(2, 3, 31, 29, generator=torch.Generator().manual_seed(i))
    with torch.no_grad():
        residual = box(x, i) - x
    assert residual.abs().max() < 0.05
    assert residual.abs().mean() < 0.02


def test_tool_output_is_input_plus_residual(busy_toolbox):
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        small = busy_toolbox.tools[0]
        assert torch.allclose(busy_toolbox(x, 0), x + small.body(x), atol=1e-6)


def test_apply_equals_row_by_row(busy_toolbox):
    actions = torch.tensor([0, 3, 12, 5, 11, 3, 12, 8, 1, 0, 10, 7, 2, 4, 6, 9])
    x = torch.rand(len(actions), 3, 21, 19, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        batched = busy_toolbox.apply_tools(x, actions)
        for n, a in enumerate(actions.tolist()):
            if a == 12:
                assert torch.equal(batched[n], x[n])
            else:
                single = busy_toolbox(x[n : n + 1], a)[0]
                assert torch.allclose(batched[n], single, atol=1e-5), (n, a)
                assert not torch.allclose(batched[n], x[n], atol=1e-3)


def test_apply_accepts_lists_and_does_not_change_its_input(busy_toolbox):
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    before = x.clone()
    with torch.no_grad():
        out = busy_toolbox.apply_tools(x, [12, 12, 12])
        assert torch.equal(out, x)
        busy_toolbox.apply_tools(x, [0, 4, 9])
    assert torch.equal(x, before)


@pytest.mark.parametrize("actions", [[0, 1], [[0], [1], [2]], []])
def test_apply_needs_one_action_per_row(busy_toolbox, actions):
    x = torch.rand(3, 3, 8, 8)
    with pytest.raises(ValueError, match="one action per row"):
        busy_toolbox.apply_tools(x, torch.tensor(actions, dtype=torch.long))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("i", [12, -1, 1.5, True, False, "0", None, 100])
def test_bad_tool_index_raises(toolbox, i):
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="tool index"):
        toolbox(x, i)


@pytest.mark.parametrize("i", [12, -1, 1.5, True])
def test_bad_tool_index_in_macs_raises(toolbox, i):
    with pytest.raises(ValueError):
        toolbox.macs(i, 10, 10)


def test_tensor_tool_index_is_accepted(toolbox):
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(toolbox(x, torch.tensor(2)), toolbox(x, 2))


@pytest.mark.parametrize(
    "shape", [(1, 1, 8, 8), (2, 4, 8, 8), (3, 8, 8), (8, 8), (1, 1, 3, 8, 8)]
)
def test_bad_input_shape_raises(toolbox, shape):
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        toolbox(torch.rand(shape), 0)
    with pytest.raises(ValueError):
        toolbox.apply_tools(torch.rand(shape), torch.zeros(shape[0], dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_input_raises_type_error(toolbox, dtype):
    x = torch.zeros(1, 3, 8, 8, dtype=dtype)
    with pytest.raises(TypeError, match="float"):
        toolbox(x, 0)
    with pytest.raises(TypeError):
        toolbox.apply_tools(x, torch.tensor([0]))


def test_numpy_input_raises_type_error(toolbox):
    with pytest.raises(TypeError, match="torch.Tensor"):
        toolbox(np.zeros((1, 3, 8, 8), dtype=np.float32), 0)


# ---------------------------------------------------------------- save and load


def test_save_load_roundtrip(busy_toolbox, tmp_path):
    path = tmp_path / "box.safetensors"
    busy_toolbox.save(path, note="roundtrip", steps=3)
    loaded = Toolbox.load(path).eval()
    assert loaded.config == {"note": "roundtrip", "steps": 3, "conv": "plain"}
    x = torch.rand(2, 3, 25, 18, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        for i in range(12):
            assert torch.equal(loaded(x, i), busy_toolbox(x, i))
    assert not list(tmp_path.glob("*.tmp"))


def state_tensors(box):
    return {k: v.detach().clone().contiguous() for k, v in box.state_dict().items()}


def write_raw(path, tensors, kind=WEIGHTS_KIND):
    save_file(tensors, str(path), metadata={"kind": kind, "config": "{}"})
    return path


def test_load_wrong_shape_raises(toolbox, tmp_path):
    tensors = state_tensors(toolbox)
    key = "tools.0.body.0.weight"
    assert key in tensors
    tensors[key] = torch.zeros(16, 3, 9, 9)
    path = write_raw(tmp_path / "shape.safetensors", tensors)
    with pytest.raises(WeightsError, match=r"shape mismatch.*tools\.0\.body\.0\.weight.*\(16, 3, 9, 9\)"):
        Toolbox.load(path)


def test_load_missing_tensor_raises(toolbox, tmp_path):
    tensors = state_tensors(toolbox)
    del tensors["tools.11.tail.bias"]
    path = write_raw(tmp_path / "missing.safetensors", tensors)
    with pytest.raises(WeightsError, match=r"missing 1 tensors.*tools\.11\.tail\.bias"):
        Toolbox.load(path)


def test_load_unexpected_tensor_raises(toolbox, tmp_path):
    tensors = state_tensors(toolbox)
    tensors["tools.12.extra"] = torch.zeros(3)
    path = write_raw(tmp_path / "extra.safetensors", tensors)
    with pytest.raises(WeightsError, match=r"1 unexpected tensors.*tools\.12\.extra"):
        Toolbox.load(path)


def test_load_non_finite_values_raises(toolbox, tmp_path):
    tensors = state_tensors(toolbox)
    tensors["tools.4.body.2.bias"][0] = float("nan")
    path = write_raw(tmp_path / "nan.safetensors", tensors)
    with pytest.raises(WeightsError, match=r"non-finite.*tools\.4\.body\.2\.bias"):
        Toolbox.load(path)


def test_load_other_kind_raises(toolbox, tmp_path):
    path = tmp_path / "other.safetensors"
    save_weights(toolbox, path, kind="other")
    with pytest.raises(WeightsError, match="holds weights of kind 'other'"):
        Toolbox.load(path)


def test_load_file_without_kind_raises(toolbox, tmp_path):
    path = tmp_path / "nokind.safetensors"
    save_file(state_tensors(toolbox), str(path))
    with pytest.raises(WeightsError, match="kind 'unknown'"):
        Toolbox.load(path)


@pytest.mark.parametrize("cut", [0.5, 0.999, 0.01])
def test_load_truncated_file_raises(busy_toolbox, tmp_path, cut):
    good = tmp_path / "good.safetensors"
    busy_toolbox.save(good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        Toolbox.load(bad)


@pytest.mark.parametrize("content", [b"garbage" * 50, b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}"])
def test_load_corrupt_file_raises(tmp_path, content):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(content)
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        Toolbox.load(bad)


def test_load_missing_file_raises(tmp_path):
    with pytest.raises(WeightsError, match="no weights file"):
        Toolbox.load(tmp_path / "absent.safetensors")


def test_weights_error_is_a_value_error():
    assert issubclass(WeightsError, ValueError)


# ---------------------------------------------------------------- tool training parameters


@pytest.mark.parametrize("spec", TOOL_SPECS, ids=lambda s: s.name)
def test_tool_params_with_robustness(spec):
    rng = np.random.default_rng(spec.index)
    lo, hi = sorted(spec.band)
    extra_noise = extra_jpeg = 0
    for _ in range(100):
        p = tool_params(spec, rng)
        assert p.levels is None
        assert isinstance(p.jpeg_quality, int)
        if spec.distortion == "blur":
            assert lo <= p.blur_std <= hi
        else:
            assert p.blur_std == 0.0
        if spec.distortion == "noise":
            assert lo <= p.noise_std <= hi
        else:
            assert 0.0 <= p.noise_std <= ROBUST_NOISE_MAX <= 5.0
            extra_noise += p.noise_std > 0
        if spec.distortion == "jpeg":
            assert lo <= p.jpeg_quality <= hi
        else:
            assert p.jpeg_quality == 101 or 80 <= ROBUST_JPEG_MIN <= p.jpeg_quality <= 100
            extra_jpeg += p.jpeg_quality != 101
    # Each slight extra shows up sometimes, not always.
    if spec.distortion != "noise":
        assert 10 < extra_noise < 90
    if spec.distortion != "jpeg":
        assert 10 < extra_jpeg < 90


@pytest.mark.parametrize("spec", TOOL_SPECS, ids=lambda s: s.name)
def test_tool_params_without_robustness(spec):
    rng = np.random.default_rng(50 + spec.index)
    lo, hi = sorted(spec.band)
    for _ in range(100):
        p = tool_params(spec, rng, robust=False)
        own = {"blur": p.blur_std, "noise": p.noise_std, "jpeg": p.jpeg_quality}[spec.distortion]
        assert lo <= own <= hi
        if spec.distortion != "blur":
            assert p.blur_std == 0.0
        if spec.distortion != "noise":
            assert p.noise_std == 0.0
        if spec.distortion != "jpeg":
            assert p.jpeg_quality == 101


@pytest.mark.parametrize("spec", TOOL_SPECS, ids=lambda s: s.name)
def test_tool_params_with_a_fixed_value(spec):
    p = tool_params(spec, np.random.default_rng(0), value=spec.mid, robust=False)
    own = {"blur": p.blur_std, "noise": p.noise_std, "jpeg": p.jpeg_quality}[spec.distortion]
    expected = round(spec.mid) if spec.distortion == "jpeg" else spec.mid
    assert own == pytest.approx(expected)


def test_combine_tools_takes_each_tool_from_its_part(tmp_path):
    from toolchain_restore.cli import main
    from toolchain_restore.tools import combine_toolboxes

    torch.manual_seed(1)
    a, b = Toolbox(), Toolbox()
    a.save(tmp_path / "a.safetensors")
    b.save(tmp_path / "b.safetensors")
    parts = [(tmp_path / "a.safetensors", range(1, 7)), (tmp_path / "b.safetensors", range(7, 13))]
    combined = combine_toolboxes(parts)
    for i in range(12):
        source = a if i < 6 else b
        for p, q in zip(combined.tools[i].parameters(), source.tools[i].parameters()):
            assert torch.equal(p, q)
    with pytest.raises(ValueError, match="no part gives tools \\[12\\]"):
        combine_toolboxes([(tmp_path / "a.safetensors", range(1, 12))])
    with pytest.raises(ValueError, match="tool 6 is given by both"):
        combine_toolboxes([parts[0], (tmp_path / "b.safetensors", range(6, 13))])
    out = tmp_path / "c.safetensors"
    assert main(["combine-tools", "--part", f"{tmp_path}/a.safetensors:1,2,3,4,5,6",
                 "--part", f"{tmp_path}/b.safetensors:7,8,9,10,11,12", "--output", str(out)]) == 0
    assert Toolbox.load(out).config["combined_from"]["12"].endswith("b.safetensors")
    assert main(["combine-tools", "--part", "a.safetensors", "--output", str(out)]) == 2


def test_apply_is_nn_module_apply_again_and_the_old_call_warns():
    toolbox = Toolbox()
    seen = []
    assert toolbox.apply(lambda m: seen.append(type(m).__name__)) is toolbox
    assert "SmallTool" in seen and "LargeTool" in seen
    x = torch.rand(2, 3, 16, 16)
    with pytest.warns(DeprecationWarning, match="apply_tools"):
        old = toolbox.apply(x, torch.tensor([0, 12]))
    torch.testing.assert_close(old, toolbox.apply_tools(x, torch.tensor([0, 12])))
