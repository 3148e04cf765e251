"""Session fixtures of the signature tests: ``pytest_plugins = ("tests.support.sigfixtures",)``.

A plugin rather than imported fixtures, so the keys are generated once per session and
the fixture names do not shadow anything in the test modules.
"""

from __future__ import annotations

import pytest

from tests.support.sigkit import World, build_world
from vdx.xmldsig.verify import Verifier


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def verifier(world: World) -> Verifier:
    return Verifier(world.trust)
