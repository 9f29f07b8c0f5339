import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions run much faster on one thread than competing for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
