"""vespa-app/ is the generator's output, and the lint catches broken packages."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from clipsearch.index.vespa import package
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.commands import register
from clipsearch.index.vespa.lint import lint_files, lint_package
from clipsearch.index.vespa.sd_parser import parse_schema

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "vespa-app"
SD = f"schemas/{n.SCHEMA}.sd"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return package.render(512)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_checked_in_package_equals_generator_output() -> None:
    assert package.differences(APP, 512) == [], "run `clipsearch vespa package` and commit"
    assert run_cli("vespa", "package", "--check", "--dir", str(APP), "--dim", "512") == 0


def test_check_fails_when_a_file_differs(tmp_path: Path) -> None:
    assert run_cli("vespa", "package", "--dir", str(tmp_path), "--dim", "512") == 0
    assert run_cli("vespa", "package", "--check", "--dir", str(tmp_path), "--dim", "512") == 0
    sd = tmp_path / SD
    sd.write_text(sd.read_text().replace("rerank-count: 200", "rerank-count: 10"))
    assert run_cli("vespa", "package", "--check", "--dir", str(tmp_path), "--dim", "512") == 1
    sd.unlink()
    assert package.differences(tmp_path, 512) == [f"{SD}: missing"]


def test_schema_content(files: dict[str, str]) -> None:
    schema = parse_schema(files[SD])
    assert schema.name == schema.document == "image"
    emb = schema.fields[n.F_EMBEDDING]
    assert emb.type == "tensor<float>(x[512])" and emb.hnsw
    assert emb.distance_metric == "prenormalized-angular"
    assert "enable-bm25" in schema.fields[n.F_CAPTION].index_options
    assert schema.fields[n.F_CAPTIONS].type == "array<string>"
    for f in n.FILTER_FIELDS:
        assert "fast-search" in schema.fields[f].attribute_options
    assert set(schema.profiles) == set(n.PROFILES) >= {"lexical", "vector", "hybrid"}
    hybrid = schema.resolved("hybrid")
    assert "reciprocal_rank" in hybrid.phases["global-phase"]
    assert hybrid.rerank_counts["global-phase"] >= 2 * 100  # both legs' default candidates
    assert "bm25" in hybrid.phases["first-phase"] and "closeness" in hybrid.phases["first-phase"]
    linear = schema.resolved("hybrid-linear")
    assert "normalize_linear" in linear.phases["global-phase"]
    assert linear.inputs["query(alpha)"] == "double"
    for p in n.PROFILES:
        assert schema.resolved(p).inputs["query(q)"] == "tensor<float>(x[512])"
        assert schema.resolved(p).match_features == [n.FN_LEXICAL, n.FN_VECTOR]


def test_dimension_follows_the_model() -> None:
    schema = parse_schema(package.render(768)[SD])
    assert schema.fields[n.F_EMBEDDING].tensor_dim == 768
    assert schema.resolved("vector").inputs["query(q)"] == "tensor<float>(x[768])"
    assert lint_files(package.render(768), 768) == []
    problems = [p.message for p in lint_files(package.render(768), 512)]
    assert any("768 dimensions, the model has 512" in p for p in problems)


def test_generated_and_checked_in_packages_pass_the_lint(files: dict[str, str]) -> None:
    assert lint_files(files, 512) == []
    assert lint_package(APP, 512) == []
    assert run_cli("vespa", "lint", "--dir", str(APP)) == 0


BROKEN = [
    ("index: enable-bm25", "", "needs 'index: enable-bm25'"),
    ("                hnsw {\n                    max-links-per-node: 16\n"
     "                    neighbors-to-explore-at-insert: 200\n                }\n", "",
     "without an HNSW index"),
    ("distance-metric: prenormalized-angular", "distance-metric: euclidean",
     "must be prenormalized-angular"),
    ("            query(alpha) double: 0.7\n", "", "query(alpha) is used but not declared"),
    ("query(q) tensor<float>(x[512])", "query(q) tensor<float>(x[256])",
     "declared as tensor<float>(x[256]), expected tensor<float>(x[512])"),
    ("rank-profile hybrid-linear {", "rank-profile hybrid_weighted {",
     "rank-profile hybrid-linear (named by the API) is missing"),
    ("reciprocal_rank(lexical_score, 60)", "reciprocal_rank(lexical_score, query(k))",
     "must be a number constant"),
    ("reciprocal_rank(lexical_score, 60)", "reciprocal_rank(lexical, 60)",
     "names no function of the profile"),
    ("            expression {\n                lexical_score\n            }",
     "            expression {\n                normalize_linear(lexical_score)\n            }",
     "only allowed in global-phase"),
    ("bm25(caption)", "bm25(title)", "bm25(title) names an unknown field"),
    ("closeness(field, embedding)", "closeness(field, dataset)", "needs a dense tensor"),
    ("        match-features {\n            lexical_score\n            vector_score\n",
     "        match-features {\n            lexical_score\n",
     "match-features must include vector_score"),
    ("rank-profile vector {", "rank-profile vector {{", "cannot parse schema"),
]


@pytest.mark.parametrize(("old", "new", "expected"), BROKEN)
def test_lint_fails_on_broken_schema(files: dict[str, str], old: str, new: str,
                                     expected: str) -> None:
    assert old in files[SD], old
    broken = dict(files)
    broken[SD] = files[SD].replace(old, new)
    problems = [str(p) for p in lint_files(broken, 512)]
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("<search></search>", "", "no container has <search>"),
    ("<document-api></document-api>", "", "no container has <document-api>"),
    ('<document type="image" mode="index"></document>', "", "schema image is not in any"),
    ("</services>", "", "not valid XML"),
])
def test_lint_fails_on_broken_services(files: dict[str, str], old: str, new: str,
                                       expected: str) -> None:
    broken = dict(files)
    broken["services.xml"] = files["services.xml"].replace(old, new)
    problems = [str(p) for p in lint_files(broken, 512)]
    assert any(expected in p for p in problems), problems


def test_lint_missing_files(tmp_path: Path) -> None:
    assert any("not a directory" in str(p) for p in lint_package(tmp_path / "nope"))
    assert {p.file for p in lint_package(tmp_path)} == {"schemas/", "services.xml"}
    (tmp_path / "services.xml").write_text("<services/>")
    assert run_cli("vespa", "lint", "--dir", str(tmp_path)) == 1


def test_lint_follows_profile_inheritance(files: dict[str, str]) -> None:
    extra = ("    rank-profile child inherits hybrid-linear {\n"
             "        first-phase {\n            expression: query(alpha) * vector_score\n"
             "        }\n    }\n}\n")
    ok = dict(files)
    ok[SD] = files[SD].rstrip().rstrip("}") + extra
    assert lint_files(ok, 512) == []
    bad = dict(files)
    bad[SD] = files[SD].rstrip().rstrip("}") + extra.replace("query(alpha)", "query(beta)")
    assert any("query(beta) is used but not declared" in str(p) for p in lint_files(bad, 512))
