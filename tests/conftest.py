import os

import pytest
import torch

# "auto" precision means fp32 in the suite unless the caller chose otherwise, so that the
# exact figures the tests check do not move between machines with and without fast bf16.
# Tests of bf16 ask for it by name; tests of "auto" itself clear this variable.
os.environ.setdefault("TOOLCHAIN_RESTORE_PRECISION", "fp32")
# Held-out defaults ("auto") read the embedded default in the suite even where a photo corpus
# is built under runs/corpus: the suite's figures must not depend on what a machine has built.
os.environ.setdefault("TOOLCHAIN_RESTORE_CORPUS", "none")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions run much faster on one thread than competing for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
