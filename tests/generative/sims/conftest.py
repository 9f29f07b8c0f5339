"""Shared fixtures: a few small procedural scenes and their memory bank."""

import pytest

from toolchain_restore.generative.datasets import synthesis_set
from toolchain_restore.generative.sims import MemoryBank


@pytest.fixture(scope="package")
def train_samples():
    data = synthesis_set("procedural", "train", 7, 12, 64, 128)
    return [data[k] for k in range(len(data))]


@pytest.fixture(scope="package")
def bank(train_samples):
    return MemoryBank.build(train_samples, 7)


@pytest.fixture(scope="package")
def bank_folder(bank, tmp_path_factory):
    return bank.save(tmp_path_factory.mktemp("bank") / "bank")
