"""What a deploy asks of the operator: ``configChangeActions`` in the config server's
``prepareandactivate`` answer (docs: reference/api/deploy-v2, operations/reindexing).

* ``restart``: listed services run the old config until restarted -> the deploy FAILS with
  the services to restart (clipsearch cannot restart Vespa's processes).
* ``refeed``: the stored documents no longer fit (e.g. a changed tensor type) -> FAILS: feed
  the collection again.
* ``reindex``: Vespa can re-derive the indexes from the stored documents; on a self-managed
  Vespa the config server marks reindexing ready (``/reindexing``) and a second deploy starts
  it -> the deploy WAITS for that (when given time), redeploys, and waits for ``successful``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clipsearch.errors import BackendError

APPLICATION_PATH = ("/application/v2/tenant/default/application/default/environment/prod/"
                    "region/default/instance/default")
REINDEXING_PATH = f"{APPLICATION_PATH}/reindexing"


class ChangeAction(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str = ""
    document_type: str = Field("", alias="documentType")
    cluster_name: str = Field("", alias="clusterName")
    messages: list[str] = Field(default_factory=list)
    services: list[dict[str, Any]] = Field(default_factory=list)

    def hosts(self) -> list[str]:
        return sorted({f"{s.get('serviceName', '?')}@{s.get('hostName', '?')}"
                       for s in self.services})


class ChangeActions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    restart: list[ChangeAction] = Field(default_factory=list)
    refeed: list[ChangeAction] = Field(default_factory=list)
    reindex: list[ChangeAction] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.restart or self.refeed or self.reindex)

    def describe(self) -> list[str]:
        """One line per action, for people."""
        lines = []
        for kind in ("restart", "refeed", "reindex"):
            for a in getattr(self, kind):
                where = ", ".join(x for x in (
                    f"document type {a.document_type}" if a.document_type else "",
                    f"cluster {a.cluster_name}" if a.cluster_name else "",
                    f"services {', '.join(a.hosts())}" if a.services else "") if x)
                why = "; ".join(" ".join(m.split()) for m in a.messages) or a.name
                lines.append(f"{kind}: {where or 'the application'}: {why}")
        return lines

    def reindex_targets(self) -> set[tuple[str, str]]:
        return {(a.cluster_name, a.document_type) for a in self.reindex}


class DeployResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    message: str = ""
    actions: ChangeActions = Field(default_factory=ChangeActions, alias="configChangeActions")


class DeployNeedsAction(BackendError):
    """The package is active, but Vespa needs a restart or a re-feed first (exit 2)."""

    reason = "deploy_needs_action"


def must_fail(actions: ChangeActions) -> str | None:
    """The message to fail with when an action needs a person (restart / refeed)."""
    parts = []
    if actions.restart:
        hosts = sorted({h for a in actions.restart for h in a.hosts()}) or ["the content nodes"]
        parts.append("restart these services before the change takes effect (e.g. "
                     "`docker compose restart vespa`, or vespa-stop-services && "
                     f"vespa-start-services on each host): {', '.join(hosts)}")
    if actions.refeed:
        types = sorted({a.document_type or "image" for a in actions.refeed})
        parts.append(f"feed every document of type {', '.join(types)} again "
                     "(`clipsearch feed ...` for each dataset): the stored documents no "
                     "longer fit the schema")
    if not parts:
        return None
    return ("the package is ACTIVE, but Vespa needs more before it serves it as defined:\n  "
            + "\n  ".join(parts) + "\nVespa said:\n  " + "\n  ".join(actions.describe()))


def reindex_state(status: dict[str, Any], cluster: str, doc_type: str) -> tuple[str, str]:
    """(phase, detail) of one document type in a ``/reindexing`` answer: phase is
    ``pending`` (not ready yet), ``ready`` (a deploy starts it), ``running``,
    ``successful`` or ``failed``."""
    clusters = status.get("clusters") or {}
    entry = clusters.get(cluster) or {}
    if doc_type in (entry.get("pending") or {}):
        return "pending", "waiting for the config server to mark reindexing ready"
    ready = (entry.get("ready") or {}).get(doc_type)
    if ready is None:
        return "pending", f"no reindexing status for {cluster}/{doc_type} yet"
    if "readyMillis" not in ready:
        return "pending", ""
    started = ready.get("startedMillis")
    if started is None or int(started) < int(ready["readyMillis"]):
        return "ready", ""  # any state shown belongs to an earlier reindexing
    state = ready.get("state")
    if state in ("successful", "failed"):
        return str(state), str(ready.get("message") or "")
    progress = ready.get("progress")
    return "running", f"progress {progress}" if progress is not None else ""
