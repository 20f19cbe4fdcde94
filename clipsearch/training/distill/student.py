"""The student: the teacher's CLIP with a narrower, shallower image tower.

Its shape comes from ratios of the teacher's (``width``, ``depth``; heads kept unless set):
width is rounded to a multiple of the heads, the MLP scales with the width, depth is at least
one layer. The text tower, the text projection and the logit scale are the teacher's (frozen
during distillation), so text queries embed exactly as the teacher embeds them.

Weight inheritance (TinyCLIP's manual inheritance): when the student keeps the teacher's width,
MLP and heads, it starts from the teacher's patch/position embeddings, layer norms, visual
projection and every k-th layer (layer ``i`` from teacher layer ``i * L // d``: every other
layer at half depth). Other shapes cannot take the teacher's matrices as they are;
``inherit=layers`` refuses them with the reason, ``inherit=auto`` starts those at random.
"""

from __future__ import annotations

import copy
import logging

import torch
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

from clipsearch.errors import InvalidRequest
from clipsearch.training.distill.config import DistillConfig, Inherit, TowerShape

log = logging.getLogger(__name__)


class InheritanceRefused(InvalidRequest):
    reason = "inheritance_refused"


def vision_config(config: CLIPConfig) -> CLIPVisionConfig:
    v = config.vision_config
    if not isinstance(v, CLIPVisionConfig):
        raise TypeError(f"not a CLIP vision config: {type(v).__name__}")
    return v


def tower_shape(config: CLIPConfig, layers: list[int] | None = None) -> TowerShape:
    v = vision_config(config)
    return TowerShape(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                      num_hidden_layers=v.num_hidden_layers,
                      num_attention_heads=v.num_attention_heads, inherited_layers=layers)


def student_shape(teacher: CLIPConfig, cfg: DistillConfig) -> TowerShape:
    """The student tower's shape from the teacher's and the ratios."""
    v = vision_config(teacher)
    heads = cfg.heads or v.num_attention_heads
    per_head = max(1, round(v.hidden_size * cfg.width / heads))
    hidden = per_head * heads
    return TowerShape(hidden_size=hidden,
                      intermediate_size=max(1, round(v.intermediate_size * hidden
                                                     / v.hidden_size)),
                      num_hidden_layers=max(1, round(v.num_hidden_layers * cfg.depth)),
                      num_attention_heads=heads)


def inheritance_problem(teacher: TowerShape, student: TowerShape) -> str | None:
    """Why the student cannot inherit the teacher's weights (None: it can)."""
    diffs = [f"{name} {getattr(student, name)} vs the teacher's {getattr(teacher, name)}"
             for name in ("hidden_size", "intermediate_size", "num_attention_heads")
             if getattr(student, name) != getattr(teacher, name)]
    if not diffs:
        return None
    return ("weight inheritance copies whole teacher layers, so the student must keep the "
            f"teacher's width, MLP size and heads (width ratio 1, heads unchanged); here "
            f"{', '.join(diffs)}. Use --width 1 to inherit every k-th layer, or --inherit "
            "auto/none to start the student at random")


def inherited_layers(teacher_layers: int, student_layers: int) -> list[int]:
    return [i * teacher_layers // student_layers for i in range(student_layers)]


def build_student(teacher: CLIPModel, cfg: DistillConfig) -> tuple[CLIPModel, TowerShape]:
    """A CLIPModel with the teacher's text side and a student image tower (see module doc)."""
    t_shape = tower_shape(teacher.config)
    shape = student_shape(teacher.config, cfg)
    problem = inheritance_problem(t_shape, shape)
    if cfg.inherit == Inherit.layers and problem:
        raise InheritanceRefused(problem)
    inherit = cfg.inherit != Inherit.none and problem is None
    if cfg.inherit == Inherit.auto and problem:
        log.info("no weight inheritance (the student starts at random): %s", problem)
    config = copy.deepcopy(teacher.config)
    vision = vision_config(config)
    vision.hidden_size = shape.hidden_size
    vision.intermediate_size = shape.intermediate_size
    vision.num_hidden_layers = shape.num_hidden_layers
    vision.num_attention_heads = shape.num_attention_heads
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        student = CLIPModel(config)
    # the text side and the scale are the teacher's, exactly
    student.text_model.load_state_dict(teacher.text_model.state_dict())
    student.text_projection.load_state_dict(teacher.text_projection.state_dict())
    with torch.no_grad():
        student.logit_scale.copy_(teacher.logit_scale)
    layers = None
    if inherit:
        layers = inherited_layers(t_shape.num_hidden_layers, shape.num_hidden_layers)
        _inherit(teacher, student, layers)
    return student, shape.model_copy(update={"inherited_layers": layers})


def _inherit(teacher: CLIPModel, student: CLIPModel, layers: list[int]) -> None:
    t, s = teacher.vision_model, student.vision_model
    s.embeddings.load_state_dict(t.embeddings.state_dict())
    s.pre_layrnorm.load_state_dict(t.pre_layrnorm.state_dict())
    s.post_layernorm.load_state_dict(t.post_layernorm.state_dict())
    for mine, theirs in enumerate(layers):
        s.encoder.layers[mine].load_state_dict(t.encoder.layers[theirs].state_dict())
    student.visual_projection.load_state_dict(teacher.visual_projection.state_dict())


def trainable(student: CLIPModel) -> list[torch.nn.Parameter]:
    """Only the image tower and its projection learn; the rest is the teacher's."""
    for p in student.parameters():
        p.requires_grad_(False)
    params = [*student.vision_model.parameters(), *student.visual_projection.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params
