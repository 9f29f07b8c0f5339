import numpy as np
import pytest
import torch

from toolchain_restore import load_toolbox
from toolchain_restore.agents.network import StopGate
from toolchain_restore.agents.policy import RecurrentQPolicy
from toolchain_restore.agents.stop_gate import (AgentEpisodes, StopGateSettings, gated_psnr, record_episodes,
                                                train_stop_gate)
from toolchain_restore.envs.episode import STOP
from toolchain_restore.envs.held_out import held_out_set
from toolchain_restore.envs.toolchain import run_policy
from toolchain_restore.metrics import batch_psnr
from toolchain_restore.serialization import WeightsError
from toolchain_restore.training import TrainerSettings


def constant_gate(logit: float) -> StopGate:
    gate = StopGate()
    with torch.no_grad():
        for p in gate.parameters():
            p.zero_()
        gate.head[-1].bias.fill_(logit)
    return gate


@pytest.fixture(scope="module")
def patches(one_thread):
    return held_out_set("moderate", 12, seed=3)


@pytest.fixture(scope="module")
def agent(one_thread):
    torch.manual_seed(0)
    return RecurrentQPolicy(seed=0)


def test_gate_reads_patch_previous_tool_step_and_chosen_tool_and_counts_its_work():
    torch.manual_seed(0)
    gate = StopGate()
    images = torch.randint(0, 256, (5, 3, 63, 63), dtype=torch.uint8)
    previous, zeros = torch.zeros(5, 12), torch.zeros(5, dtype=torch.long)
    assert gate(images, previous, torch.tensor([0, 1, 2, 3, 0]), zeros).shape == (5,)
    one = images[:1], previous[:1]
    tool = torch.tensor([4])
    assert gate(*one, torch.tensor([3]), tool) == gate(*one, torch.tensor([2]), tool) != gate(*one, torch.tensor([0]), tool)
    assert gate(*one, torch.tensor([0]), torch.tensor([4])) != gate(*one, torch.tensor([0]), torch.tensor([5]))
    torch.testing.assert_close(gate(images.float() / 255, previous, zeros, zeros), gate(images, previous, zeros, zeros))
    convs = 63 * 63 * 16 * 3 * 9 + 32 * 32 * 32 * 16 * 9 + 16 * 16 * 64 * 32 * 9 + 8 * 8 * 64 * 64 * 9
    assert gate.macs(63) == convs + (2 * (16 + 32 + 64 + 64) + 12 + 3) * 64 + 64 * 12


def test_a_gate_that_sees_the_result_reads_the_change_the_tool_made_and_cannot_run_in_an_agent(agent):
    torch.manual_seed(0)
    gate = StopGate(sees_result=True)
    images = torch.randint(0, 256, (3, 3, 63, 63), dtype=torch.uint8)
    previous, zeros = torch.zeros(3, 12), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="result"):
        gate(images, previous, zeros, zeros)
    assert gate(images, previous, zeros, zeros, images.flip(-1)).shape == (3,)
    assert not torch.equal(gate(images, previous, zeros, zeros, images), gate(images, previous, zeros, zeros, images.flip(-1)))
    assert gate.macs(63) - StopGate().macs(63) == 63 * 63 * 16 * 3 * 9  # three more input channels
    with pytest.raises(ValueError, match="undo"):
        agent.with_stop_gate(gate)


@pytest.mark.parametrize("logit, stops", [(-50.0, False), (50.0, True)])
def test_the_gate_only_ever_turns_a_tool_into_stop(agent, patches, logit, stops):
    gated = agent.with_stop_gate(constant_gate(logit), 0.5)
    toolbox = load_toolbox()
    _, chains, decisions = run_policy(gated, toolbox, patches.L)
    _, free_chains, _ = run_policy(agent, toolbox, patches.L)
    if stops:
        assert all(c == () for c in chains) and (decisions == 1).all()
    else:
        assert chains == free_chains
    assert gated.macs_per_decision() == agent.macs_per_decision() + StopGate().macs(63)


def test_offline_gated_psnr_is_what_the_gated_agent_reaches(agent, patches):
    toolbox = load_toolbox()
    torch.manual_seed(1)
    gate = StopGate()
    episodes = record_episodes(agent, toolbox, patches.L, patches.H, chunk=5, with_results=True)
    probability = torch.sigmoid(gate(*(torch.from_numpy(a) for a in (episodes.images, episodes.previous,
                                                                      episodes.steps, episodes.tools)))).detach().numpy()
    _, free_chains, _ = run_policy(agent, toolbox, patches.L)
    for row, chain in enumerate(free_chains):
        at = episodes.episode == row
        assert tuple(episodes.tools[at]) == chain and episodes.steps[at].tolist() == list(range(len(chain)))
        assert (episodes.values[at].argmax(1) == episodes.tools[at]).all()  # the tool is the values' choice
        # Each state's result is the next state, and the last one the episode's final patch.
        states = np.concatenate([episodes.images[at], episodes.results[at][-1:]])
        assert np.array_equal(episodes.results[at], states[1:])
    threshold = float(np.quantile(probability, 0.9))  # some episodes stop early, some do not
    final, stop_at = gated_psnr(episodes, probability, threshold)
    restored, chains, _ = run_policy(agent.with_stop_gate(gate, threshold), toolbox, patches.L)
    np.testing.assert_allclose(final, batch_psnr(restored, patches.H).numpy(), atol=1e-9)
    assert [len(c) for c in chains] == stop_at.tolist()
    assert 0 < (stop_at < episodes.lengths).sum() < len(stop_at)


def test_stop_advantage_is_psnr_kept_minus_the_best_later_psnr():
    episodes = AgentEpisodes(psnr=np.array([[20.0, 23.0, 24.0, 23.5], [30.0, 29.0, 29.0, 29.0]]),
                             lengths=np.array([3, 1]), images=np.zeros((4, 3, 63, 63), np.uint8),
                             results=np.zeros((4, 3, 63, 63), np.uint8),
                             previous=np.zeros((4, 12), np.float32), steps=np.array([0, 1, 2, 0]),
                             tools=np.array([3, 6, 10, 1]), values=np.zeros((4, 13), np.float32),
                             episode=np.array([0, 0, 0, 1]))
    np.testing.assert_allclose(episodes.stop_advantage, [-4.0, -1.0, 0.5, 1.0])
    final, stop_at = gated_psnr(episodes, np.array([0.1, 0.2, 0.9, 0.9]), 0.5)
    assert final.tolist() == [24.0, 30.0] and stop_at.tolist() == [2, 0]


def test_gated_agent_round_trips_and_refuses_a_file_without_its_gate(agent, tmp_path):
    gated = agent.with_stop_gate(constant_gate(3.0), 0.3)
    gated.stop_gate_config = {"validation": {"gain/mild": 1.0}}
    gated.save(tmp_path / "gated.safetensors", training={"total_steps": 5})
    loaded = RecurrentQPolicy.load(tmp_path / "gated.safetensors")
    assert loaded.stop_threshold == 0.3 and loaded.training_settings == {"total_steps": 5}
    assert loaded.stop_gate_config == {"validation": {"gain/mild": 1.0}}
    for a, b in zip(gated.stop_gate.state_dict().values(), loaded.stop_gate.state_dict().values()):
        assert torch.equal(a, b)
    assert RecurrentQPolicy.load(tmp_path / "gated.safetensors").without_stop_gate().stop_gate is None
    # A file whose header promises a gate but whose tensors lack it is refused, not half-loaded.
    from safetensors.torch import load_file, save_file
    tensors = {k: v for k, v in load_file(tmp_path / "gated.safetensors").items() if not k.startswith("stop_gate.")}
    from safetensors import safe_open
    with safe_open(str(tmp_path / "gated.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    save_file(tensors, tmp_path / "broken.safetensors", metadata=metadata)
    with pytest.raises(WeightsError, match="missing"):
        RecurrentQPolicy.load(tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match="threshold"):
        agent.with_stop_gate(constant_gate(0.0), 1.5)


def test_a_gated_agent_needs_the_step_count(agent):
    observation = {"image": np.zeros((2, 3, 63, 63), np.uint8), "previous_action": np.zeros((2, 12), np.float32)}
    with pytest.raises(ValueError, match="'step'"):
        agent.with_stop_gate(constant_gate(0.0)).predict(observation, deterministic=True)
    actions, _ = agent.with_stop_gate(constant_gate(9.0)).predict({**observation, "step": np.zeros(2)}, deterministic=True)
    assert (actions == STOP).all()


def test_train_stop_gate_writes_an_agent_with_a_gate_chosen_on_validation(tmp_path, one_thread):
    settings = StopGateSettings(patches=6, eval_patches=4, batch_size=8, thresholds=[0.3, 0.6])
    trainer = TrainerSettings(out_dir=str(tmp_path / "gate"), iterations=4, eval_every=2, checkpoint_every=2,
                              progress=False)
    threshold, sweep, task = train_stop_gate(settings, trainer)
    loaded = RecurrentQPolicy.load(tmp_path / "gate" / "agent.safetensors")
    assert [t for t, _ in sweep] == [0.3, 0.6] and loaded.stop_threshold == threshold
    chosen = dict(sweep)[threshold]
    assert all(np.mean([chosen[f"gain/{lv}"] - m[f"gain/{lv}"] for lv in ("mild", "moderate", "severe")]) >= 0
               for _, m in sweep)
    assert loaded.stop_gate_config["settings"]["patches"] == 6
    assert set(loaded.stop_gate_config["validation"]) >= {"gain/mild", "stops_first/clean", "ungated_gain/severe"}
    # The training labels: stop exactly where the rest of the agent's own chain lowers PSNR.
    episodes, labels, weights = task.train
    assert labels.tolist() == (episodes.stop_advantage > 0).tolist()
    assert weights.max() <= settings.weight_cap
    ungated = task.ungated()
    for level in ("mild", "moderate", "severe", "clean"):  # no stopping rule passes the best state
        assert ungated[f"best_stop_gain/{level}"] >= max(ungated[f"ungated_gain/{level}"],
                                                          *(m[f"gain/{level}"] for _, m in sweep)) - 1e-9
    # Read again, the finished run trains nothing and records no train episodes.
    again = train_stop_gate(settings, trainer)[2]
    assert again._train is None


def test_a_gate_that_sees_the_result_is_scored_but_writes_no_agent(tmp_path, one_thread):
    settings = StopGateSettings(patches=4, eval_patches=3, batch_size=8, thresholds=[0.5], sees_result=True)
    trainer = TrainerSettings(out_dir=str(tmp_path / "gate"), iterations=2, eval_every=2, checkpoint_every=2,
                              progress=False)
    threshold, sweep, task = train_stop_gate(settings, trainer)
    assert threshold == 0.5 and task.model.sees_result and set(sweep[0][1]) >= {"gain/mild", "stops_first/clean"}
    assert not (tmp_path / "gate" / "agent.safetensors").exists()


@pytest.mark.parametrize("field, value", [("thresholds", [0.5, 1.2]), ("thresholds", []), ("patches", 0),
                                          ("weight_cap", 0.0)])
def test_bad_settings_are_refused_before_any_work(field, value):
    from toolchain_restore.errors import InvalidInput

    with pytest.raises(InvalidInput, match=f"--{field.replace('_', '-')}"):
        StopGateSettings(**{field: value})
