"""Shared fixtures."""

import pytest

from helpers import DATA


@pytest.fixture(scope="session")
def data_dir():
    if not DATA.is_dir():
        pytest.skip(f"test images not found at {DATA}")
    return DATA
