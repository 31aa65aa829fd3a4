from __future__ import annotations

import pytest

from deidentify.engine import PseudonymKeys
from tests.deidentify.factories import SECRET


@pytest.fixture
def keys() -> PseudonymKeys:
    return PseudonymKeys(SECRET)
