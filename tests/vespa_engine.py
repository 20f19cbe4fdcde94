"""The search engine inside the loopback Vespa (tests only): a parser for the YQL subset the
client may send, exact BM25 and closeness, and the ranking of the generated profiles.

Approximations, on purpose and only here: the tokenizer lower-cases, splits on non-word
characters and strips a plural ``s``/``ies`` (a stand-in for Vespa's English stemmer);
weakAnd is evaluated as OR; nearestNeighbor is exact. Hybrid fusion calls
``clipsearch.fusion`` (competition ranks), i.e. the formula, not Vespa's ordinal ties;
``normalize_linear`` of a constant leg is 0.5 there, as Vespa's ``LinearNormalizer``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clipsearch.fusion import Candidate, closeness_from_cosine, fused_scores, score_fusion
from clipsearch.index.vespa import schema_names as n
from clipsearch.search import Fusion, HybridParameters

K1, B = 1.2, 0.75
_WORD = re.compile(r"\w+", re.UNICODE)


class YqlError(ValueError):
    """The request is not in the shape Vespa accepts (answered with HTTP 400)."""


def stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower())]


# ---------------------------------------------------------------------------- YQL
@dataclass
class Node:
    kind: str  # and / or / not / true / userquery / nn / in
    children: list[Node] = field(default_factory=list)
    field_name: str = ""
    values: list[str] = field(default_factory=list)
    target_hits: int = 0
    query_tensor: str = ""
    # ``in`` on a field without ``match: cased``: Vespa lower-cases the values and the
    # attribute matches case-insensitively (set by the loopback from the schema)
    folded: bool = False


_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(\d+)|([A-Za-z_][\w.]*)|([(){}:,!]))')


def _lex(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip().rstrip(";")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise YqlError(f"cannot parse YQL near {text[pos:pos + 20]!r}")
        out.append(m.group(0).strip())
        pos = m.end()
    return out


class _Parser:
    def __init__(self, toks: list[str]) -> None:
        self.t = toks
        self.i = 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise YqlError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.peek() == "or":
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Node("or", items)

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.peek() == "and":
            self.take()
            items.append(self.unary())
        if len(items) > 1 and all(c.kind == "not" for c in items):
            raise YqlError("a negation needs a positive term beside it")
        return items[0] if len(items) == 1 else Node("and", items)

    def unary(self) -> Node:
        if self.peek() == "!":
            self.take()
            return Node("not", [self.unary()])
        return self.primary()

    def primary(self) -> Node:
        tok = self.peek()
        if tok == "(":
            self.take()
            node = self.or_expr()
            self.take(")")
            return node
        if tok == "true":
            self.take()
            return Node("true")
        if tok == "userQuery":
            self.take()
            self.take("(")
            self.take(")")
            return Node("userquery")
        if tok == "{":
            return self.nearest_neighbor()
        name = self.take()
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise YqlError(f"unexpected {name!r}")
        op = self.take()
        if op == "in":
            self.take("(")
            values = [self._string()]
            while self.peek() == ",":
                self.take()
                values.append(self._string())
            self.take(")")
            return Node("in", field_name=name, values=values)
        if op == "contains":
            return Node("in", field_name=name, values=[self._string()])
        raise YqlError(f"unsupported operator {op!r}")

    def _string(self) -> str:
        tok = self.take()
        if not tok.startswith('"'):
            raise YqlError(f"expected a string literal, got {tok!r}")
        return str(json.loads(tok))

    def nearest_neighbor(self) -> Node:
        self.take("{")
        target = 0
        while self.peek() != "}":
            key = self.take()
            self.take(":")
            value = self.take()
            if key == "targetHits":
                target = int(value)
            elif key not in ("approximate", "hnsw.exploreAdditionalHits", "label"):
                raise YqlError(f"unknown nearestNeighbor annotation {key!r}")
            if self.peek() == ",":
                self.take()
        self.take("}")
        if target <= 0:
            raise YqlError("nearestNeighbor needs targetHits > 0")
        self.take("nearestNeighbor")
        self.take("(")
        fname = self.take()
        self.take(",")
        qname = self.take()
        self.take(")")
        return Node("nn", field_name=fname, target_hits=target, query_tensor=qname)


@dataclass
class Select:
    fields: list[str]
    source: str
    where: Node


_SELECT = re.compile(r"^\s*select\s+(.+?)\s+from\s+(\w+)\s+where\s+(.+?)\s*;?\s*$", re.S)


def parse_yql(yql: str) -> Select:
    m = _SELECT.match(yql)
    if not m:
        raise YqlError("YQL must be 'select FIELDS from SOURCE where ...'")
    fields = [f.strip() for f in m.group(1).split(",")]
    p = _Parser(_lex(m.group(3)))
    where = p.or_expr()
    if p.peek() is not None:
        raise YqlError(f"trailing YQL: {' '.join(p.t[p.i:])!r}")
    return Select(fields, m.group(2), where)


def walk(node: Node) -> list[Node]:
    out = [node]
    for c in node.children:
        out += walk(c)
    return out


# ---------------------------------------------------------------------------- scoring
def bm25_scores(docs: dict[str, dict[str, Any]], text: str) -> dict[str, float]:
    """Exact BM25 over the caption field for every doc matching at least one term."""
    toks = {k: tokens(str(d.get(n.F_CAPTION, ""))) for k, d in docs.items()}
    if not toks:
        return {}
    avg = sum(len(t) for t in toks.values()) / len(toks) or 1.0
    terms = tokens(text)  # every occurrence counts: Vespa's bm25 sums repeated query terms
    out: dict[str, float] = {}
    for term in terms:
        df = sum(1 for t in toks.values() if term in t)
        if df == 0:
            continue
        idf = math.log(1 + (len(toks) - df + 0.5) / (df + 0.5))
        for k, t in toks.items():
            tf = t.count(term)
            if tf:
                norm = tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(t) / avg))
                out[k] = out.get(k, 0.0) + idf * norm
    return out


def closeness(docs: dict[str, dict[str, Any]], q: list[float],
              field: str = n.F_EMBEDDING) -> dict[str, float]:
    """Closeness to ``q`` of every document holding a value in the tensor ``field`` (a
    document without one is no nearestNeighbor match; its closeness feature is 0)."""
    keys = [k for k, d in docs.items() if d.get(field) is not None]
    if not keys:
        return {}
    mat = np.array([docs[k][field] for k in keys], dtype=np.float64)
    cos = mat @ np.asarray(q, dtype=np.float64)
    return dict(zip(keys, closeness_from_cosine(cos).tolist(), strict=True))


def _matches_filter(node: Node, doc: dict[str, Any]) -> bool:
    if node.kind == "in":
        value = doc.get(node.field_name)
        items = list(value) if isinstance(value, dict) else [value]  # a weighted set: its keys
        if node.folded:
            wanted = {v.lower() for v in node.values}
            return any(str(v).lower() in wanted for v in items)
        return any(v in node.values for v in items)
    if node.kind == "not":
        return not _matches_filter(node.children[0], doc)
    if node.kind == "and":
        return all(_matches_filter(c, doc) for c in node.children)
    if node.kind == "or":
        return any(_matches_filter(c, doc) for c in node.children)
    return True  # true / retrieval operators are handled by the caller


def evaluate(node: Node, doc_key: str, doc: dict[str, Any], lexical: set[str],
             nn: set[str]) -> bool:
    if node.kind == "true":
        return True
    if node.kind == "userquery":
        return doc_key in lexical
    if node.kind == "nn":
        return doc_key in nn
    if node.kind == "in":
        return _matches_filter(node, doc)
    if node.kind == "not":
        return not evaluate(node.children[0], doc_key, doc, lexical, nn)
    if node.kind == "and":
        return all(evaluate(c, doc_key, doc, lexical, nn) for c in node.children)
    return any(evaluate(c, doc_key, doc, lexical, nn) for c in node.children)


def filter_nodes(where: Node) -> list[Node]:
    """The AND-ed filter terms (no retrieval operator inside) of a where clause."""
    items = where.children if where.kind == "and" else [where]
    return [c for c in items if not any(x.kind in ("userquery", "nn") for x in walk(c))]


@dataclass
class Ranked:
    key: str
    relevance: float
    lexical: float
    vector: float


def global_phase(window: list[Ranked], profile: str, alpha: float) -> None:
    """The global phase of the rrf / linear hybrid profiles over ``window`` (the hits the
    earlier phases kept): relevance = the fusion of their two legs (clipsearch.fusion)."""
    params = HybridParameters(
        fusion=Fusion.rrf if profile == n.PROFILE_HYBRID else Fusion.linear,
        rrf_k=n.RRF_K, alpha=alpha)
    scores = fused_scores([Candidate(r.key, r.lexical, r.vector) for r in window], params)
    for r, s in zip(window, scores.tolist(), strict=True):
        r.relevance = s


def rank(profile: str, candidates: list[str], bm25: dict[str, float], close: dict[str, float],
         rerank_count: int, alpha: float, saturation: float = 3.0) -> list[Ranked]:
    """Order matched docs the way the generated profile does (fusion from clipsearch.fusion)."""
    rows = [Ranked(k, 0.0, bm25.get(k, 0.0), close.get(k, 0.0)) for k in candidates]
    if profile == n.PROFILE_HYBRID_SCORE:  # first phase only
        scores = score_fusion(np.array([r.lexical for r in rows]),
                              np.array([r.vector for r in rows]), alpha, saturation)
        for r, s in zip(rows, scores.tolist(), strict=True):
            r.relevance = s
    elif profile == n.PROFILE_LEXICAL:
        for r in rows:
            r.relevance = r.lexical
    elif profile == n.PROFILE_VECTOR:
        for r in rows:
            r.relevance = r.vector
    elif profile in (n.PROFILE_HYBRID, n.PROFILE_HYBRID_LINEAR):
        for r in rows:
            r.relevance = r.vector + r.lexical / (r.lexical + 10)
        rows.sort(key=lambda r: (-r.relevance, r.key))
        window, rest = rows[:rerank_count], rows[rerank_count:]
        global_phase(window, profile, alpha)
        low = min((r.relevance for r in window), default=0.0)
        for i, r in enumerate(rest):  # not reranked: below every reranked hit
            r.relevance = low - 1.0 - i * 1e-6
        rows = window + rest
    else:  # default profile (id look-ups, counts)
        for r in rows:
            r.relevance = 0.0
    rows.sort(key=lambda r: (-r.relevance, r.key))
    return rows
