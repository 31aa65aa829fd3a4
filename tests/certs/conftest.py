from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories.pki import TestNetwork, make_network


@pytest.fixture
def network(tmp_path: Path) -> TestNetwork:
    return make_network(tmp_path)
