"""Shared fixtures: the recorded-exchange server, provider keys that are obviously fake, offline litellm."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# litellm fetches its price map from GitHub at import unless told otherwise; tests never touch the network.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-a-real-key")
os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
os.environ.pop("REDIS_URL", None)
os.environ.pop("LMI_CACHE", None)  # a developer's own cache must not answer the tests

from tests.replay import ReplayServer

# Property tests draw the same examples on every run by default, so a CI run never fails on a fresh draw
# nobody has seen; `HYPOTHESIS_PROFILE=explore pytest ...` draws fresh ones (do it before landing a
# change to what they cover, and keep what they find as an @example).
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def replay_server() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


@pytest.fixture
def replay(replay_server: ReplayServer) -> Iterator[ReplayServer]:
    """The session's replay server, with its request log and faults cleared for this test."""
    replay_server.clear()
    replay_server.stream_delay = 0.0
    yield replay_server
    replay_server.clear()
