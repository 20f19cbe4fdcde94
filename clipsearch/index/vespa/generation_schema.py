"""The schema parts of index generations on Vespa (used by ``package``): one HNSW tensor field
per later generation, the per-document ``generations`` weighted set, and the small
``generation_catalog`` document type holding the catalog (``generation_names`` has the
naming rules).

Adding a generation's field to a deployed application is a live schema change: Vespa's
schema reference ("Modifying schemas": "Add a new document field ... as index, attribute,
summary or any combination", valid without restart or re-feed; existing documents get the
field empty) and ``en/basics/schemas.html`` ("add a new field instead, populate it, switch
usages to the new field, then remove the old"). Removing the field after ``drop`` is also
valid without restart; ``drop`` clears the values first, because the reference warns that a
field re-added with the same type may see old content reappear.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel
from pydantic import Field as PydField
from vespa.package import HNSW, Document, Field, Schema

from clipsearch.index.generations import LEGACY_NAME, Catalog
from clipsearch.index.vespa import generation_names as gn


class GenerationField(BaseModel):
    """A generation as the package sees it: its name and dimension."""

    name: str = PydField(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    dim: int = PydField(ge=2, le=4096)

    @property
    def field(self) -> str:
        return gn.field_for(self.name)

    @property
    def suffix(self) -> str:
        return gn.profile_suffix(self.name)

    @classmethod
    def parse(cls, spec: str) -> GenerationField:
        """``NAME=DIM`` (the CLI's ``--generation``)."""
        name, sep, dim = spec.partition("=")
        if not sep or not dim.strip().isdigit():
            raise ValueError(f"--generation takes NAME=DIM, not {spec!r}")
        gn.check_name(name.strip())
        return cls(name=name.strip(), dim=int(dim))


def later_generations(catalog: Catalog) -> list[GenerationField]:
    """The catalog's generations that need a field of their own (all but g0)."""
    return [GenerationField(name=g.name, dim=g.dim) for g in catalog.generations
            if g.name != LEGACY_NAME]


def tensor_field(name: str, dim: int, cell_type: str) -> Field:
    """An embedding field: prenormalized-angular HNSW, as the g0 field ``embedding``."""
    return Field(name, f"tensor<{cell_type}>(x[{dim}])", indexing=["attribute", "index"],
                 ann=HNSW(distance_metric="prenormalized-angular", max_links_per_node=16,
                          neighbors_to_explore_at_insert=200))


def generation_fields(generations: Sequence[GenerationField], cell_type: str) -> list[Field]:
    seen: set[str] = set()
    out = []
    for g in generations:
        if g.name == LEGACY_NAME or g.name in seen:
            raise ValueError(f"generation {g.name!r} given twice or is g0 (field embedding)")
        seen.add(g.name)
        out.append(tensor_field(g.field, g.dim, cell_type))
    return out


def membership_field() -> Field:
    """``generations``: which generations hold a vector of the document (a weighted set, so
    adding a name twice is idempotent: the docs' "add weighted set entries")."""
    return Field(gn.F_GENERATIONS, "weightedset<string>", indexing=["attribute", "summary"],
                 attribute=["fast-search"])


def catalog_schema() -> Schema:
    """One document (``id:<ns>:generation_catalog::generations``): the catalog as JSON and a
    revision compared by test-and-set (``condition=generation_catalog.revision==N``)."""
    return Schema(gn.CATALOG_SCHEMA, document=Document(fields=[
        Field(gn.F_CATALOG_REVISION, "long", indexing=["attribute", "summary"]),
        Field(gn.F_CATALOG_JSON, "string", indexing=["summary"]),
    ]))
