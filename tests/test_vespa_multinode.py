"""Multi-node packages (issue 17 item 8): ``clipsearch vespa package --nodes N --redundancy R
--groups G --container-nodes C [--config-servers K]`` writes services.xml + hosts.xml; one
golden file pair per shape under tests/golden/vespa-cluster/<shape>/, the compose cluster
profile's package vespa-app-cluster/ equals the generator's output, and the lint catches
broken topologies. (No Vespa cluster runs here: structure and lint only.)"""

from __future__ import annotations

import argparse
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydantic import ValidationError

from clipsearch.index.vespa import package
from clipsearch.index.vespa.commands import register
from clipsearch.index.vespa.deploy import deploy
from clipsearch.index.vespa.hosts import Topology, render
from clipsearch.index.vespa.lint import lint_files, lint_package
from tests.vespa_loopback import LoopbackVespa

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "vespa-cluster"
SHAPES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
COMPOSE_SHAPE = Topology(nodes=2, redundancy=2, groups=1, container_nodes=1, config_servers=1)


def topology_of(shape: str) -> Topology:
    m = re.fullmatch(r"n(\d+)-r(\d+)-g(\d+)-c(\d+)-cs(\d+)", shape)
    assert m, shape
    nodes, red, groups, containers, configs = map(int, m.groups())
    return Topology(nodes=nodes, redundancy=red, groups=groups, container_nodes=containers,
                    config_servers=configs)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_there_are_golden_shapes() -> None:
    assert len(SHAPES) >= 3 and "n2-r2-g1-c1-cs1" in SHAPES


@pytest.mark.parametrize("shape", SHAPES)
def test_golden_files_per_shape(shape: str) -> None:
    t = topology_of(shape)
    assert t.shape == shape
    files = render(t, 512)
    for name in ("services.xml", "hosts.xml"):
        assert files[name] == (GOLDEN / shape / name).read_text(), (
            f"{shape}/{name}: regenerate with `clipsearch vespa package` and the shape's options")
    assert files["schemas/image.sd"] == package.render(512)["schemas/image.sd"]
    assert lint_files(files, 512) == []
    root = ET.fromstring(files["services.xml"])
    content = root.find("content")
    assert content is not None
    assert content.findtext("min-redundancy") == str(t.redundancy)
    assert len(list(content.iter("node"))) == t.nodes
    assert len(root.findall("admin/configservers/configserver")) == t.config_servers
    container = root.find("container")
    assert container is not None and container.find("search") is not None
    assert container.find("document-api") is not None
    assert len(container.findall("nodes/node")) == t.container_nodes
    leaves = content.findall("group/group")
    assert len(leaves) == (t.groups if t.groups > 1 else 0)
    if leaves:
        dist = content.find("group/distribution")
        assert dist is not None
        assert dist.get("partitions", "").count("|") == t.groups - 1
        assert all(len(g.findall("node")) == t.nodes // t.groups for g in leaves)


def test_compose_cluster_package_is_generated(tmp_path: Path) -> None:
    args = ["vespa", "package", "--dim", "512", "--nodes", "2", "--redundancy", "2",
            "--groups", "1", "--container-nodes", "1", "--config-servers", "1"]
    assert run_cli(*args, "--check", "--dir", str(REPO / "vespa-app-cluster")) == 0
    assert lint_package(REPO / "vespa-app-cluster", 512) == []
    assert run_cli(*args, "--dir", str(tmp_path)) == 0
    (tmp_path / "hosts.xml").write_text("<hosts/>")
    assert run_cli(*args, "--check", "--dir", str(tmp_path)) == 1
    compose = (REPO / "docker-compose.yml").read_text()
    for alias in (*COMPOSE_SHAPE.aliases("config"), *COMPOSE_SHAPE.aliases("content"),
                  *COMPOSE_SHAPE.aliases("container")):
        assert f"hostname: {COMPOSE_SHAPE.host(alias)}" in compose, alias


@pytest.mark.parametrize(("kw", "message"), [
    ({"nodes": 3, "groups": 2}, "do not split into 2 equal groups"),
    ({"nodes": 4, "groups": 2, "redundancy": 3}, "multiple of groups"),
    ({"nodes": 2, "groups": 2, "redundancy": 4}, "need at least as many nodes per group"),
    ({"config_servers": 2}, "1, 3 or 5"),
    ({"domain": "bad_domain"}, "pattern"),
])
def test_impossible_shapes_are_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Topology.model_validate(kw)


def test_cli_refuses_an_impossible_shape(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="do not split"):
        run_cli("vespa", "package", "--nodes", "3", "--groups", "2", "--dir", str(tmp_path))
    assert not (tmp_path / "services.xml").exists()


def _edit(files: dict[str, str], name: str, old: str, new: str) -> dict[str, str]:
    assert old in files[name], old
    return {**files, name: files[name].replace(old, new, 1)}


@pytest.mark.parametrize(("name", "old", "new", "expected"), [
    ("hosts.xml", "<alias>vespa-content-1</alias>", "<alias>other</alias>",
     "hostalias 'vespa-content-1' is not declared"),
    ("hosts.xml", "vespa-config-0.vespanet", "vespa_config_0.vespanet", "contains '_'"),
    ("services.xml", '<configserver hostalias="vespa-config-2" />', "",
     "2 config servers: use an odd number"),
    ("services.xml", 'partitions="1|*"', 'partitions="1|1|*"', "names 3 groups, there are 2"),
    ("services.xml", "<min-redundancy>2</min-redundancy>", "<min-redundancy>9</min-redundancy>",
     "redundancy 9 exceeds its 4 nodes"),
    ("services.xml", 'hostalias="vespa-content-3" distribution-key="3"',
     'hostalias="vespa-content-3" distribution-key="2"', "unique distribution-key"),
])
def test_lint_catches_broken_topologies(name: str, old: str, new: str, expected: str) -> None:
    files = render(Topology(nodes=4, redundancy=2, groups=2, container_nodes=2,
                            config_servers=3), 16)
    problems = [str(p) for p in lint_files(_edit(files, name, old, new), 16)]
    assert any(expected in p for p in problems), problems


def test_lint_wants_hosts_xml_for_a_cluster() -> None:
    files = render(COMPOSE_SHAPE, 16)
    del files["hosts.xml"]
    assert any("no hosts.xml" in str(p) for p in lint_files(files, 16))
    assert lint_files(package.render(16), 16) == []  # the single-node package needs none


def test_cluster_package_deploys_to_the_loopback(tmp_path: Path) -> None:
    from clipsearch.index.vespa.hosts import write

    write(tmp_path, render(COMPOSE_SHAPE, 16))
    with LoopbackVespa(dim=16, deployed=False) as vespa:
        assert "activated" in deploy(tmp_path, vespa.url, vespa.url, wait_s=0,
                                     report=lambda _: None)
        body = next(r.body for r in vespa.requests if r.path.endswith("prepareandactivate"))
    assert isinstance(body, bytes) and b"hosts.xml" in body
