"""``python -m clipsearch.models.prefetch``: download (or just check) the configured CLIP model
into the Hugging Face cache once, before the services start.

The compose stack runs it as a one-shot service, so the encoder and the API start with
``HF_HUB_OFFLINE=1`` from the cache on the shared volume: their health then means "model
loaded", not "still downloading" (a first download of ViT-B/32 takes minutes).
"""

from __future__ import annotations

import sys

from clipsearch.models.loading import ModelLoadError, load_clip_parts
from clipsearch.settings import Settings


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    model = (argv or sys.argv[1:] or [settings.model])[0]
    try:
        parts = load_clip_parts(model, revision=settings.model_revision)
    except ModelLoadError as exc:
        print(f"prefetch: {exc.message}", file=sys.stderr)
        return 1
    dim = int(parts.model.config.projection_dim or 0)
    print(f"prefetch: {parts.name} is in the cache (embedding dim {dim})")
    if dim != settings.embedding_dim:
        print(f"prefetch: CLIPSEARCH_EMBEDDING_DIM is {settings.embedding_dim} but the model "
              f"embeds in {dim} dimensions: set it (and regenerate vespa-app/ with "
              f"`clipsearch vespa package --dim {dim}`)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
