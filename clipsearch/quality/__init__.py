"""Per-index search-quality state learned from labels: tuned fusion (and its storage)."""
