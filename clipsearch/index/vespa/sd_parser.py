"""A small reader for the parts of Vespa schema (``.sd``) files that the lint checks.

Written here because no Python library parses ``.sd`` files (pyvespa only writes them). It
understands nested ``name { ... }`` blocks, ``key: value`` lines, ``#`` comments and raw
``expression { ... }`` bodies; that covers what the package generator emits and the usual
hand-written variants. It is not a validator: the lint does the checking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, Field


@dataclass
class Node:
    """A statement (``children`` empty, ``is_block`` false) or a ``header { children }`` block."""

    text: str
    is_block: bool = False
    children: list[Node] = field(default_factory=list)

    @property
    def words(self) -> list[str]:
        return self.text.split()


class SchemaSyntaxError(ValueError):
    pass


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _raw_block(text: str, pos: int) -> tuple[str, int]:
    """Text up to the brace matching the one just before ``pos``; returns (body, new pos)."""
    depth = 1
    start = pos
    while pos < len(text):
        ch = text[pos]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:pos], pos + 1
        pos += 1
    raise SchemaSyntaxError("unclosed expression block")


def _parse(text: str, pos: int, top: bool) -> tuple[list[Node], int]:
    nodes: list[Node] = []
    acc: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == "{":
            header = "".join(acc).strip()
            acc = []
            if header.split(":")[0].strip() == "expression":
                body, pos = _raw_block(text, pos + 1)
                nodes.append(Node(f"expression: {' '.join(body.split())}"))
                continue
            children, pos = _parse(text, pos + 1, top=False)
            nodes.append(Node(header, is_block=True, children=children))
            continue
        if ch == "}":
            if top:
                raise SchemaSyntaxError("unbalanced '}'")
            if "".join(acc).strip():
                nodes.append(Node("".join(acc).strip()))
            return nodes, pos + 1
        if ch == "\n":
            if "".join(acc).strip():
                nodes.append(Node("".join(acc).strip()))
            acc = []
        else:
            acc.append(ch)
        pos += 1
    if not top:
        raise SchemaSyntaxError("unclosed block")
    if "".join(acc).strip():
        nodes.append(Node("".join(acc).strip()))
    return nodes, pos


def parse_nodes(text: str) -> list[Node]:
    nodes, _ = _parse(_strip_comments(text), 0, top=True)
    return nodes


class FieldInfo(BaseModel):
    name: str
    type: str
    indexing: list[str] = Field(default_factory=list)
    index_options: list[str] = Field(default_factory=list)
    attribute_options: list[str] = Field(default_factory=list)
    hnsw: bool = False
    # the constant of a '"xx" | set_language' statement in the field's indexing
    language: str | None = None
    match_options: list[str] = Field(default_factory=list)  # e.g. ["cased"]
    # false for a synthetic field (outside the document block): filled by its indexing
    # statement from other fields (``input x | ...``), never fed
    in_document: bool = True

    @property
    def cased(self) -> bool:
        return "cased" in self.match_options

    @property
    def distance_metric(self) -> str | None:
        for opt in self.attribute_options:
            if opt.startswith("distance-metric"):
                return opt.split(":", 1)[1].strip()
        return None

    @property
    def cell_type(self) -> str | None:
        m = re.fullmatch(r"tensor<(\w+)>\(.*\)", self.type.replace(" ", ""))
        if m:
            return m.group(1)
        return "double" if self.type.replace(" ", "").startswith("tensor(") else None

    @property
    def paged(self) -> bool:
        return "paged" in self.attribute_options

    @property
    def tensor_dim(self) -> int | None:
        m = re.fullmatch(r"tensor(?:<\w+>)?\(\w+\[(\d+)\]\)", self.type.replace(" ", ""))
        return int(m.group(1)) if m else None


class ProfileInfo(BaseModel):
    name: str
    inherits: list[str] = Field(default_factory=list)
    inputs: dict[str, str] = Field(default_factory=dict)
    functions: dict[str, str] = Field(default_factory=dict)
    # first-phase / second-phase / global-phase -> expression
    phases: dict[str, str] = Field(default_factory=dict)
    rerank_counts: dict[str, int] = Field(default_factory=dict)
    match_features: list[str] = Field(default_factory=list)


class SchemaInfo(BaseModel):
    name: str
    document: str
    fields: dict[str, FieldInfo] = Field(default_factory=dict)
    fieldsets: dict[str, list[str]] = Field(default_factory=dict)
    profiles: dict[str, ProfileInfo] = Field(default_factory=dict)

    def resolved(self, profile: str) -> ProfileInfo:
        """A profile with what it inherits merged in (own definitions win)."""
        seen: set[str] = set()

        def walk(name: str) -> ProfileInfo:
            if name in seen or name not in self.profiles:
                return ProfileInfo(name=name)
            seen.add(name)
            own = self.profiles[name]
            merged = ProfileInfo(name=name)
            for parent in own.inherits:
                p = walk(parent)
                merged.inputs.update(p.inputs)
                merged.functions.update(p.functions)
                merged.phases.update(p.phases)
                merged.rerank_counts.update(p.rerank_counts)
                merged.match_features = merged.match_features or p.match_features
            merged.inputs.update(own.inputs)
            merged.functions.update(own.functions)
            merged.phases.update(own.phases)
            merged.rerank_counts.update(own.rerank_counts)
            merged.match_features = own.match_features or merged.match_features
            return merged

        return walk(profile)


def _key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition(":")
    return key.strip(), value.strip()


def _read_indexing(info: FieldInfo, statements: list[str]) -> None:
    """Indexing statements: ``"en" | set_language`` sets ``language``, the others' steps
    go to ``indexing``."""
    for statement in statements:
        steps = [p.strip() for p in statement.split("|") if p.strip()]
        if steps and steps[-1] == "set_language":
            literal = re.fullmatch(r'"([^"]*)"', steps[0]) if len(steps) == 2 else None
            info.language = literal.group(1) if literal else "(from a document field)"
        else:
            info.indexing.extend(steps)


def _read_field(node: Node) -> FieldInfo:
    words = node.words  # field NAME type TYPE
    if len(words) < 4 or words[2] != "type":
        raise SchemaSyntaxError(f"bad field header: {node.text!r}")
    info = FieldInfo(name=words[1], type="".join(words[3:]))
    for child in node.children:
        key, value = _key_value(child.text)
        if not child.is_block and key == "indexing":
            _read_indexing(info, [value])
        elif child.is_block and child.text == "indexing":  # indexing { a | b; c; }
            _read_indexing(info, [s for c in child.children for s in c.text.split(";")])
        elif not child.is_block and key == "index":
            info.index_options.append(value)
        elif not child.is_block and key == "attribute":
            info.attribute_options.append(value)
        elif child.is_block and child.text == "index":
            for opt in child.children:
                if opt.is_block and opt.text == "hnsw":
                    info.hnsw = True
                else:
                    info.index_options.append(opt.text)
        elif child.is_block and child.text == "attribute":
            info.attribute_options.extend(opt.text for opt in child.children)
        elif not child.is_block and key == "match":
            info.match_options.append(value)
        elif child.is_block and child.text == "match":
            info.match_options.extend(opt.text for opt in child.children)
    return info


def _list_items(node: Node) -> list[str]:
    if node.is_block:
        return [w for c in node.children for w in c.text.split()]
    return _key_value(node.text)[1].split()


def _read_profile(node: Node) -> ProfileInfo:
    words = node.words  # rank-profile NAME [inherits A, B]
    info = ProfileInfo(name=words[1])
    if "inherits" in words:
        rest = " ".join(words[words.index("inherits") + 1:])
        info.inherits = [p.strip() for p in rest.split(",") if p.strip()]
    for child in node.children:
        head = child.text.split(":")[0].split()[0] if child.text else ""
        if child.is_block and child.text == "inputs":
            for inp in child.children:
                m = re.fullmatch(r"(query\(\w+\))\s*(?::\s*)?([^:]*?)(?:\s*:\s*(.*))?",
                                 inp.text)
                if not m:
                    raise SchemaSyntaxError(f"bad input declaration: {inp.text!r}")
                info.inputs[m.group(1)] = (m.group(2) or "double").replace(" ", "")
        elif child.is_block and head == "function":
            m = re.fullmatch(r"function\s+(?:inline\s+)?(\w+)\s*\(.*\)", child.text)
            if not m:
                raise SchemaSyntaxError(f"bad function header: {child.text!r}")
            exprs = [_key_value(c.text)[1] for c in child.children
                     if _key_value(c.text)[0] == "expression"]
            info.functions[m.group(1)] = exprs[0] if exprs else ""
        elif child.is_block and head in ("first-phase", "second-phase", "global-phase"):
            for c in child.children:
                key, value = _key_value(c.text)
                if key == "expression":
                    info.phases[head] = value
                elif key in ("rerank-count", "total-rerank-count"):
                    info.rerank_counts[head] = int(value)
        elif head == "match-features":
            info.match_features = _list_items(child)
    return info


def parse_schema(text: str) -> SchemaInfo:
    nodes = parse_nodes(text)
    schemas = [nd for nd in nodes if nd.is_block and nd.words[:1] == ["schema"]]
    if len(schemas) != 1:
        raise SchemaSyntaxError("expected exactly one 'schema NAME { ... }' block")
    top = schemas[0]
    docs = [c for c in top.children if c.is_block and c.words[:1] == ["document"]]
    if len(docs) != 1:
        raise SchemaSyntaxError("expected exactly one 'document NAME { ... }' block")
    info = SchemaInfo(name=top.words[1], document=docs[0].words[1])
    for nd in docs[0].children + top.children:
        if nd.is_block and nd.words[:1] == ["field"]:
            f = _read_field(nd)
            f.in_document = any(nd is d for d in docs[0].children)
            info.fields[f.name] = f
        elif nd.is_block and nd.words[:1] == ["fieldset"]:
            for c in nd.children:
                key, value = _key_value(c.text)
                if key == "fields":
                    info.fieldsets[nd.words[1]] = [v.strip() for v in value.split(",")]
        elif nd.is_block and nd.words[:1] == ["rank-profile"]:
            p = _read_profile(nd)
            info.profiles[p.name] = p
    return info
