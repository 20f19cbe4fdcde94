"""Bad options and settings at the command line: one clean line each, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field, ValidationError

from clipsearch.cli import main
from clipsearch.settings import Settings
from clipsearch.validation_messages import describe


@pytest.mark.parametrize("spec", ["3/3", "a/b", "0/0", "1/99999", "-1/3", "1/3/5"])
def test_bad_shard_names_the_option_and_the_rule(tmp_path: Path, spec: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feed", str(tmp_path), f"--shard={spec}"]) == 2
    err = capsys.readouterr().err
    assert f"--shard: must be k/n with 0 <= k < n <= 9999, e.g. 0/3 (got '{spec}')" in err
    assert "pydantic" not in err and "[type=" not in err


def test_bad_setting_names_the_environment_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLIPSEARCH_VESPA_TIMEOUT_S", "-1")
    assert main(["feed", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "CLIPSEARCH_VESPA_TIMEOUT_S: Input should be greater than 0 (got '-1')" in err
    assert "errors.pydantic.dev" not in err


def test_describe_lists_every_error_and_shortens_long_inputs() -> None:
    class Options(BaseModel):
        batch_size: int = Field(ge=1)
        name: str = Field(max_length=3)

    with pytest.raises(ValidationError) as caught:
        Options(batch_size=0, name="x" * 200)
    lines = describe(caught.value).splitlines()
    assert lines[0] == "  --batch-size: Input should be greater than or equal to 1 (got 0)"
    assert lines[1].startswith("  --name: String should have at most 3 characters (got 'xxx")
    assert lines[1].endswith("...)") and len(lines[1]) < 130

    with pytest.raises(ValidationError) as settings_error:
        Settings(vespa_feed_concurrency=0)
    assert describe(settings_error.value).startswith("  CLIPSEARCH_VESPA_FEED_CONCURRENCY: ")
