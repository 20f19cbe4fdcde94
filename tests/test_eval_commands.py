"""The ``eval``, ``finetune`` and ``demo-model`` subcommands parse and run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from transformers import CLIPModel

from clipsearch.evaluation.commands import register as register_eval
from clipsearch.training.commands import register as register_training


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipsearch")
    sub = parser.add_subparsers(dest="command", required=True)
    register_eval(sub)
    register_training(sub)
    return parser


def test_eval_arguments() -> None:
    args = _parser().parse_args([
        "eval", "--source", "m.jsonl", "--model", "a", "--model", "b", "--sweep",
        "--alphas", "0,0.5,1", "--template", "a photo of {category}", "--fusion", "linear"])
    assert args.model == ["a", "b"] and args.sweep and args.alphas == "0,0.5,1"
    assert args.template == ["a photo of {category}"] and args.index == "fresh"
    with pytest.raises(SystemExit):
        _parser().parse_args(["eval", "--source", "m", "--index", "elsewhere"])


def test_finetune_requires_model_source_and_out() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["finetune", "--model", "m"])
    args = _parser().parse_args(["finetune", "--model", "m", "--source", "s", "--out", "o"])
    assert args.epochs == 10 and args.lr == 5e-6


def test_demo_model_init_only_writes_a_loadable_model(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["demo-model", "--init-only", "--out", str(tmp_path / "m")])
    assert args.func(args) == 0
    model = CLIPModel.from_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert model.config.projection_dim == 512 and config["vision_config"]["image_size"] == 64
    assert "untrained" in capsys.readouterr().out
