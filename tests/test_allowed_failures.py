"""Where ``allowed_failures`` comes from: keyword, dask config, dask's env name."""

import pytest

from trioflow.config import env_name
from trioflow.server.scheduler import Scheduler

NAME = "distributed.scheduler.allowed-failures"
ENV = "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"


def test_env_name_is_dasks():
    assert env_name(NAME) == ENV


def test_default_is_three(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert Scheduler().state.allowed_failures == 3


def test_environment_variable_as_dask_spells_it(monkeypatch):
    monkeypatch.setenv(ENV, "7")
    assert Scheduler().state.allowed_failures == 7


def test_keyword_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(ENV, "7")
    assert Scheduler(allowed_failures=0).state.allowed_failures == 0


def test_dask_config_set():
    dask_config = pytest.importorskip("dask.config")
    with dask_config.set({NAME: 5}):
        assert Scheduler().state.allowed_failures == 5


def test_bad_configured_value_names_the_setting(monkeypatch):
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(ValueError, match=ENV):
        Scheduler()
    with pytest.raises(ValueError, match="allowed_failures"):
        Scheduler(allowed_failures=-1)
