"""Checks of a multi-node ``services.xml`` + ``hosts.xml`` that Vespa reports only at deploy
time: every hostalias declared, host names valid DNS names, an odd number of config servers,
unique distribution keys, redundancy within the nodes, group partitions matching the groups.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET


def _aliases_used(root: ET.Element) -> list[str]:
    return [str(e.get("hostalias")) for e in root.iter() if e.get("hostalias") is not None]


def lint_topology(services: str, hosts: str | None) -> list[str]:
    """Checks of a multi-node services.xml (+ hosts.xml) Vespa reports only at deploy time."""
    try:
        root = ET.fromstring(services)
    except ET.ParseError:
        return []  # the services lint reports the XML error
    used = _aliases_used(root)
    multi = len(set(used)) > 1 or root.find("admin") is not None
    if not multi:
        return []
    if hosts is None:
        return ["services.xml names hosts (hostalias) but there is no hosts.xml"]
    try:
        hroot = ET.fromstring(hosts)
    except ET.ParseError as exc:
        return [f"hosts.xml is not valid XML: {exc}"]
    problems: list[str] = []
    declared: dict[str, str] = {}
    for host in hroot.findall("host"):
        for alias_el in host.findall("alias"):
            declared[str(alias_el.text).strip()] = str(host.get("name"))
        name = str(host.get("name"))
        if "_" in name:
            problems.append(f"hosts.xml: host name {name!r} contains '_' (not a valid DNS name)")
    for alias in dict.fromkeys(used):
        if alias not in declared:
            problems.append(f"hostalias {alias!r} is not declared in hosts.xml")
    configs = [e.get("hostalias") for e in root.iter("configserver")]
    if configs and len(configs) % 2 == 0:
        problems.append(f"{len(configs)} config servers: use an odd number (a majority must "
                        "agree)")
    for content in root.findall("content"):
        problems += _lint_content(content)
    return problems


def _lint_content(content: ET.Element) -> list[str]:
    cid = content.get("id")
    problems: list[str] = []
    copies_el = content.find("min-redundancy")
    if copies_el is None:
        copies_el = content.find("redundancy")
    copies = int(copies_el.text or "1") if copies_el is not None else 1
    nodes = list(content.iter("node"))
    keys = [e.get("distribution-key") for e in nodes]
    if None in keys or len(set(keys)) != len(keys):
        problems.append(f"content {cid}: every node needs a unique distribution-key")
    if copies > len(nodes):
        problems.append(f"content {cid}: redundancy {copies} exceeds its {len(nodes)} nodes")
    top = content.find("group")
    if top is not None:
        leaves = top.findall("group")
        dist = top.find("distribution")
        if leaves and dist is None:
            problems.append(f"content {cid}: a group with subgroups needs <distribution>")
        elif leaves and dist is not None:
            parts = str(dist.get("partitions", "")).split("|")
            if len(parts) != len(leaves):
                problems.append(f"content {cid}: partitions {dist.get('partitions')!r} "
                                f"names {len(parts)} groups, there are {len(leaves)}")
        if any(not list(g.iter("node")) for g in leaves):
            problems.append(f"content {cid}: a group has no nodes")
        if leaves and copies % len(leaves):
            problems.append(f"content {cid}: redundancy {copies} is not a multiple of the "
                            f"{len(leaves)} groups")
    return problems
