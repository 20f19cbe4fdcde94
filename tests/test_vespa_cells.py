"""The embedding field's cell type (issue 17 item 9, first part): float (default) or
bfloat16 (half the vectors' memory) from CLIPSEARCH_VESPA_CELL_TYPE / --cell-type; queries
stay tensor<float> (as in Vespa's billion-scale-image-search sample). Loopback only."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from clipsearch.index.vespa import package
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.commands import register
from clipsearch.index.vespa.deploy import deploy
from clipsearch.index.vespa.hosts import Topology
from clipsearch.index.vespa.hosts import render as render_cluster
from clipsearch.index.vespa.lint import lint_files, lint_package
from clipsearch.index.vespa.sd_parser import parse_schema
from clipsearch.settings import Settings
from tests.vespa_loopback import LoopbackVespa

SD = f"schemas/{n.SCHEMA}.sd"


def test_bfloat16_field_float_queries() -> None:
    files = package.render(16, cell_type="bfloat16")
    schema = parse_schema(files[SD])
    assert schema.fields[n.F_EMBEDDING].type == "tensor<bfloat16>(x[16])"
    assert schema.fields[n.F_EMBEDDING].tensor_dim == 16 and schema.fields[n.F_EMBEDDING].hnsw
    assert all(schema.resolved(p).inputs[n.INPUT_Q] == "tensor<float>(x[16])"
               for p in n.PROFILES)
    assert lint_files(files, 16) == []
    assert package.render(16)[SD] == package.render(16, cell_type="float")[SD]
    cluster = render_cluster(Topology(), 16, cell_type="bfloat16")
    assert cluster[SD] == files[SD]


def test_setting_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().vespa_cell_type == "float"
    with pytest.raises(ValueError):
        Settings(vespa_cell_type="double")  # type: ignore[arg-type]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    monkeypatch.setenv("CLIPSEARCH_VESPA_CELL_TYPE", "bfloat16")
    args = parser.parse_args(["vespa", "package", "--dir", str(tmp_path), "--dim", "16"])
    assert args.func(args) == 0
    assert "tensor<bfloat16>(x[16])" in (tmp_path / SD).read_text()
    assert lint_package(tmp_path, 16) == []
    args = parser.parse_args(["vespa", "package", "--dir", str(tmp_path), "--dim", "16",
                              "--cell-type", "float", "--check"])
    assert args.func(args) == 1  # the folder holds the bfloat16 package


def test_bfloat16_package_deploys_to_the_loopback(tmp_path: Path) -> None:
    package.write(tmp_path, 16)
    (tmp_path / SD).write_text(package.render(16, cell_type="bfloat16")[SD])
    with LoopbackVespa(dim=16, deployed=False) as vespa:
        deploy(tmp_path, vespa.url, vespa.url, wait_s=0, report=lambda _: None)
        assert vespa.state.schema is not None
        assert vespa.state.schema.fields[n.F_EMBEDDING].type == "tensor<bfloat16>(x[16])"
