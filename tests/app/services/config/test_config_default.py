"""The order of the settings' sources: defaults, then `ROOT/nodeloom.yaml`, then `NODELOOM_*` variables, then
explicit values (what `nodeloom serve`'s flags become), each overriding the ones before it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodeloom.app.services.config.config_default import CONFIG_FILE_NAME, NodeloomConfig, load_config


@pytest.fixture(autouse=True)
def no_nodeloom_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the variables they mean; none from the environment that runs them counts."""
    for name in list(os.environ):
        if name.startswith("NODELOOM_"):
            monkeypatch.delenv(name)


def test_each_source_overrides_the_ones_before_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / CONFIG_FILE_NAME).write_text("port: 9101\nmax_queue_size: 11\nlog_level: warning\n")
    monkeypatch.setenv("NODELOOM_MAX_QUEUE_SIZE", "22")
    monkeypatch.setenv("NODELOOM_LOG_LEVEL", "error")

    config = load_config(tmp_path, log_level="debug")

    assert config.host == NodeloomConfig.model_fields["host"].default == "127.0.0.1"  # set by no source
    assert config.port == 9101  # the file, over the default
    assert config.max_queue_size == 22  # the variable, over the file
    assert config.log_level == "debug"  # the explicit value, over the variable and the file


@pytest.mark.parametrize(
    ("file", "variable", "explicit", "expected"),
    [
        (None, None, None, 9090),
        ("9101", None, None, 9101),
        (None, "9102", None, 9102),
        ("9101", "9102", None, 9102),
        (None, None, 9103, 9103),
        ("9101", None, 9103, 9103),
        ("9101", "9102", 9103, 9103),
    ],
)
def test_one_setting_through_every_combination_of_sources(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file: str | None,
    variable: str | None,
    explicit: int | None,
    expected: int,
) -> None:
    if file is not None:
        (tmp_path / CONFIG_FILE_NAME).write_text(f"port: {file}\n")
    if variable is not None:
        monkeypatch.setenv("NODELOOM_PORT", variable)
    config = load_config(tmp_path) if explicit is None else load_config(tmp_path, port=explicit)
    assert config.port == expected


def test_the_root_is_the_explicit_one_else_nodeloom_root_and_its_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_variable, explicit = (tmp_path / "from-variable").resolve(), (tmp_path / "explicit").resolve()
    for root, port in ((from_variable, 9201), (explicit, 9202)):
        root.mkdir()
        (root / CONFIG_FILE_NAME).write_text(f"port: {port}\n")
    monkeypatch.setenv("NODELOOM_ROOT", str(from_variable))

    assert (load_config().root, load_config().port) == (from_variable, 9201)
    assert (load_config(explicit).root, load_config(explicit).port) == (explicit, 9202)
