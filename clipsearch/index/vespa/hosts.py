"""A multi-node Vespa application: ``services.xml`` + ``hosts.xml`` for a real cluster,
generated beside the single-node package (same schema).

Layout, after vespa-engine/sample-apps ``examples/operations/multinode-HA`` and the
services.xml reference (``reference/applications/services/content``):

* ``config_servers`` (1 or 3) hosts run the config server, a cluster controller and a
  slobrok each; the first is also the admin server;
* one container cluster with ``<search>``, ``<document-api>`` and the indexing
  ``<document-processing>`` on ``container_nodes`` hosts (queries and feeding both go to any
  of them);
* one content cluster with ``min-redundancy`` R (self-managed: "a total redundancy of at least
  min-redundancy") over ``nodes`` content hosts: flat ``<nodes>`` for one group, else
  ``groups`` leaf groups of ``nodes / groups`` hosts under a top group whose
  ``<distribution partitions>`` puts ``R / groups`` copies in each group (every group holds
  a full copy, so each group can answer a query alone).

Host names are ``<alias>.<domain>`` (the compose profile's containers are reachable by
those names on network ``vespanet``). XML is written with the standard library.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from clipsearch.index.vespa import package
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.generation_names import CATALOG_SCHEMA
from clipsearch.index.vespa.generation_schema import GenerationField

CONTAINER_ID = "clipsearch_container"  # the ids of the single-node package (pyvespa's)
CONTENT_ID = "clipsearch_content"


class Topology(BaseModel):
    nodes: int = Field(2, ge=1, le=512, description="content nodes")
    redundancy: int = Field(2, ge=1, le=16, description="min-redundancy: copies kept")
    groups: int = Field(1, ge=1, le=64)
    container_nodes: int = Field(1, ge=1, le=128)
    config_servers: int = Field(1, ge=1, le=5)
    domain: str = Field("vespanet", pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")

    @model_validator(mode="after")
    def _consistent(self) -> Topology:
        if self.config_servers not in (1, 3, 5):
            raise ValueError("config_servers must be 1, 3 or 5 (a majority must be up)")
        if self.nodes % self.groups:
            raise ValueError(f"{self.nodes} content nodes do not split into {self.groups} "
                             "equal groups")
        if self.redundancy % self.groups:
            raise ValueError(f"redundancy {self.redundancy} must be a multiple of groups "
                             f"{self.groups} (each group holds the same number of copies)")
        if self.redundancy // self.groups > self.nodes // self.groups:
            raise ValueError(f"{self.redundancy // self.groups} copies per group need at "
                             f"least as many nodes per group (have {self.nodes // self.groups})")
        return self

    @property
    def shape(self) -> str:
        return (f"n{self.nodes}-r{self.redundancy}-g{self.groups}-c{self.container_nodes}"
                f"-cs{self.config_servers}")

    def aliases(self, role: str) -> list[str]:
        count = {"config": self.config_servers, "container": self.container_nodes,
                 "content": self.nodes}[role]
        return [f"vespa-{role}-{i}" for i in range(count)]

    def host(self, alias: str) -> str:
        return f"{alias}.{self.domain}"


def _pretty(root: ET.Element) -> str:
    ET.indent(root, space="    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def services_xml(t: Topology) -> str:
    root = ET.Element("services", version="1.0")
    admin = ET.SubElement(root, "admin", version="2.0")
    config = t.aliases("config")
    for tag, child in (("configservers", "configserver"), ("cluster-controllers",
                                                           "cluster-controller"),
                       ("slobroks", "slobrok")):
        parent = ET.SubElement(admin, tag)
        for alias in config:
            ET.SubElement(parent, child, hostalias=alias)
    ET.SubElement(admin, "adminserver", hostalias=config[0])

    container = ET.SubElement(root, "container", id=CONTAINER_ID, version="1.0")
    ET.SubElement(container, "search")
    ET.SubElement(container, "document-api")
    ET.SubElement(container, "document-processing")  # the indexing chain runs here
    nodes = ET.SubElement(container, "nodes")
    for alias in t.aliases("container"):
        ET.SubElement(nodes, "node", hostalias=alias)

    content = ET.SubElement(root, "content", id=CONTENT_ID, version="1.0")
    ET.SubElement(content, "min-redundancy").text = str(t.redundancy)
    docs = ET.SubElement(content, "documents")
    ET.SubElement(docs, "document", type=n.SCHEMA, mode="index")
    ET.SubElement(docs, "document", type=CATALOG_SCHEMA, mode="index")  # index generations
    ET.SubElement(docs, "document-processing", cluster=CONTAINER_ID)
    hosts = t.aliases("content")
    if t.groups == 1:
        flat = ET.SubElement(content, "nodes")
        for key, alias in enumerate(hosts):
            ET.SubElement(flat, "node", {"hostalias": alias, "distribution-key": str(key)})
    else:
        top = ET.SubElement(content, "group")
        per_group = t.redundancy // t.groups
        partitions = "|".join([str(per_group)] * (t.groups - 1) + ["*"])
        ET.SubElement(top, "distribution", partitions=partitions)
        size = t.nodes // t.groups
        for g in range(t.groups):
            group = ET.SubElement(top, "group", {"name": f"group{g}",
                                                 "distribution-key": str(g)})
            for key in range(g * size, (g + 1) * size):
                ET.SubElement(group, "node", {"hostalias": hosts[key],
                                              "distribution-key": str(key)})
    return _pretty(root)


def hosts_xml(t: Topology) -> str:
    root = ET.Element("hosts")
    for role in ("config", "container", "content"):
        for alias in t.aliases(role):
            host = ET.SubElement(root, "host", name=t.host(alias))
            ET.SubElement(host, "alias").text = alias
    return _pretty(root)


def render(t: Topology, dim: int = 512, language: str = n.DEFAULT_LANGUAGE,
           cell_type: str = package.DEFAULT_CELL_TYPE,
           generations: tuple[GenerationField, ...] = (),
           binarized: package.vbin.BinarizedOptions | None = None) -> dict[str, str]:
    """The single-node package's schema with the cluster's services.xml and hosts.xml."""
    files = package.render(dim, language, cell_type, generations, binarized)
    files["services.xml"] = services_xml(t)
    files["hosts.xml"] = hosts_xml(t)
    return files


def write(target: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def differences(target: Path, files: dict[str, str]) -> list[str]:
    return package.differences_from(target, files)
