from __future__ import annotations

import pytest

from scoring import ScoringModel, default_rules


@pytest.fixture(scope="session")
def rules():
    return default_rules()


@pytest.fixture(scope="session")
def model(rules):
    return ScoringModel(rules)
