"""The toolchain core every tool-applying loop drives."""

import numpy as np
import pytest
import torch

from toolchain_restore.envs.toolchain import STOP, ToolchainBatch, check_action, check_actions, run_policy
from toolchain_restore.metrics import batch_psnr
from toolchain_restore.tools import Toolbox


@pytest.fixture(scope="module")
def toolbox():
    torch.manual_seed(0)
    return Toolbox().eval()


def images(n, seed=0, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_each_row_gets_its_tool_clamped_and_the_reward_is_the_psnr_change(toolbox):
    L, H = images(4), images(4, seed=1)
    batch = ToolchainBatch(toolbox, L, H)
    with torch.no_grad():
        rewards, applied = batch.step([0, 5, 12, 5])
        expected = torch.stack([toolbox(L[i:i + 1], t).clamp(0, 1)[0] if t != STOP else L[i]
                                for i, t in enumerate([0, 5, 12, 5])])
    torch.testing.assert_close(batch.state, expected)
    assert applied.tolist() == [True, True, False, True] and batch.active.tolist() == [True, True, False, True]
    gain = (batch_psnr(expected, H) - batch_psnr(L, H)).numpy()
    np.testing.assert_allclose(rewards, np.where(applied, gain, 0.0), atol=1e-5)
    assert batch.chains == [[0], [5], [], [5]] and batch.steps.tolist() == [1, 1, 0, 1]
    obs = batch.observation()
    assert obs["previous_action"][1, 5] == 1 and obs["previous_action"][2].sum() == 0
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (4, 3, 16, 16)


def test_a_stopped_row_stays_stopped_until_restarted(toolbox):
    batch = ToolchainBatch(toolbox, images(2), images(2, 1))
    with torch.no_grad():
        batch.step([STOP, 1])
        before = batch.state[0].clone()
        batch.step([3, 1])
        assert torch.equal(batch.state[0], before) and batch.chains == [[], [1, 1]]
        assert batch.decisions.tolist() == [1, 2]
        assert batch.finished(max_steps=2).tolist() == [True, True]
        batch.restart([0], images(1, 5), images(1, 6))
    assert batch.active.tolist() == [True, True] and batch.chains[0] == [] and batch.decisions[0] == 0
    assert batch.input_psnr[0] == pytest.approx(float(batch_psnr(images(1, 5), images(1, 6))[0]))


def test_training_rules_end_an_episode_below_the_input_psnr_and_not_before(toolbox):
    H = images(1, 1)
    batch = ToolchainBatch(toolbox, H.clone(), H)  # a clean input: any change lowers PSNR
    assert not batch.finished(max_steps=3, training_rules=True)[0]
    with torch.no_grad():
        batch.step([8])
    assert batch.psnr[0] < batch.input_psnr[0]
    assert batch.finished(max_steps=3, training_rules=True)[0] and not batch.finished(max_steps=3)[0]


def test_with_gradients_the_chain_is_differentiable(toolbox):
    L = images(3).requires_grad_(True)
    batch = ToolchainBatch(toolbox, L)
    batch.step([0, 4, 4])
    batch.step([4, 0, STOP])
    batch.state.sum().backward()
    assert L.grad is not None and L.grad.abs().sum() > 0
    assert all(p.grad is not None for p in toolbox.tools[4].parameters())


@pytest.mark.parametrize("actions, fragment", [([0, 13], "actions in 0..12"), ([-1, 0], "actions in 0..12"),
                                               ([0], "must be 2 ints"), ([0.5, 1.0], "must be 2 ints")])
def test_bad_actions_are_refused_in_one_place(actions, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_actions(np.array(actions), 2)
    bad = [a for a in actions if a not in range(13)] or [0.5]
    with pytest.raises(ValueError, match="action"):
        check_action(bad[0])
    assert check_actions(np.array([[3], [12]]), 2).tolist() == [3, 12]


class FirstToolThenStop:
    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        n = len(observation["image"])
        return np.where(observation["step"] == 0, 2, STOP), state


def test_run_policy_drives_the_core_and_records_the_trace(toolbox):
    L = images(3)
    trace = []
    E, chains, decisions = run_policy(FirstToolThenStop(), toolbox, L, max_steps=3, trace=trace)
    assert chains == [(2,), (2,), (2,)] and decisions.tolist() == [2, 2, 2]
    assert len(trace) == 2 and torch.equal(trace[0], L)
    with torch.no_grad():
        torch.testing.assert_close(E, toolbox(L, 2).clamp(0, 1))
