"""Contrastive fine-tuning of CLIP checkpoints and the reproducible demo model."""
