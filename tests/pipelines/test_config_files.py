"""Flow configs from TOML + options: validated once, errors name the file and field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from pipelines.config_files import ConfigError, load_config


class Inner(BaseModel):
    delay_s: float = Field(1.0, ge=0)
    agent: str = "bot"


class Outer(BaseModel):
    batch_size: int = Field(8, ge=1)
    inner: Inner = Inner()


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('batch_size = 16\n[inner]\ndelay_s = 2.5\nagent = "x"\n')
    config = load_config(Outer, path, {"inner": {"agent": "y"}, "batch_size": None})
    assert config.batch_size == 16  # None means "option not given"
    assert config.inner.delay_s == 2.5 and config.inner.agent == "y"


def test_bad_value_names_file_and_field(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[inner]\ndelay_s = -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path)
    message = str(err.value)
    assert message.startswith(f"{path}: inner.delay_s: ") and "\n" not in message


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*missing.toml"):
        load_config(Outer, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("batch_size = = 3\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(Outer, bad)


def test_a_misspelled_section_or_field_is_refused_with_the_known_names(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[innr]\ndelay_s = 2.0\n")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path)
    assert str(err.value) == (
        f"{path}: unknown section `innr` (did you mean `inner`?); known: batch_size, inner"
    )
    path.write_text("[inner]\ndelay = 2.0\n")
    with pytest.raises(
        ConfigError, match=r"unknown field `inner.delay` \(did you mean `inner.delay_s`\?\)"
    ):
        load_config(Outer, path)
    path.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match=r"unknown field `colour`; known: batch_size, inner$"):
        load_config(Outer, path)


def test_the_end_to_end_config_refuses_a_misspelled_stage(tmp_path):
    from pipelines.end_to_end import EndToEndConfig

    path = tmp_path / "run.toml"
    path.write_text("[pretrian]\nmax_steps = 10\n")
    with pytest.raises(
        ConfigError, match=r"unknown section `pretrian` \(did you mean `pretrain`\?\)"
    ):
        load_config(EndToEndConfig, path)
