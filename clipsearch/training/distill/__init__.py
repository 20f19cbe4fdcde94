"""``clipsearch distill``: a smaller image tower that embeds into its teacher's space.

Modules: ``config`` (settings and results), ``teacher`` (the frozen teacher, refused without
an image tower), ``student`` (shape from ratios, weight inheritance), ``data`` (train /
held-out split, texts), ``losses`` (L1 + KL, affinity mimicking), ``loop`` (training, early
stopping, progress), ``checkpoint`` (resume), ``speed`` (student vs teacher images/s),
``save`` (the complete CLIP folder, model card and space declaration), ``commands`` (CLI).
The recipe follows PicCollage's distillation (seed 003) and TinyCLIP (ICCV 2023).
"""
