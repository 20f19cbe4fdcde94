"""The distillation loss: the seed's L1 + KL sum, with TinyCLIP's affinity mimicking.

All on unit embeddings, ``s`` the student's images, ``t`` the teacher's (same augmented view),
``u`` the teacher's texts of the batch (captions, or category prompts when there are none):

* **L1**: ``mean_i sum_d |s_id - t_id|`` (the L1 distance per image, averaged);
* **image-text KL** (affinity mimicking): the teacher's image->text and text->image softmax
  distributions (``scale * t @ u.T / T``, rows and columns) against the student's
  (``scale * s @ u.T / T``), averaged over both directions;
* **image-image KL**: each student image's distribution over the batch's teacher images
  (``scale * s @ t.T / T``) against the teacher's own (``scale * t @ t.T / T``): the relations
  between images, and the pairing of each image with its teacher embedding.

``scale`` is the teacher's logit scale (capped at 100, as CLIP does). Every KL is
``KL(teacher || student)`` per row, averaged over rows and multiplied by ``T**2`` (Hinton et
al.: keeps the gradients' size comparable across temperatures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    image_text: float = 1.0
    image_image: float = 1.0


@dataclass
class LossParts:
    total: torch.Tensor
    l1: float
    kl_image_text: float
    kl_image_image: float


def l1_unit(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return (student - teacher).abs().sum(dim=-1).mean()


def kl_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """``KL(softmax(teacher) || softmax(student))`` per row, row mean, times ``T**2``."""
    return F.kl_div(F.log_softmax(student_logits, dim=-1),
                    F.log_softmax(teacher_logits, dim=-1), log_target=True,
                    reduction="batchmean") * temperature ** 2


def logit_scale(raw: torch.Tensor) -> torch.Tensor:
    return raw.detach().clamp(max=MAX_LOGIT_SCALE).exp()


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, texts: torch.Tensor | None,
                 *, scale: torch.Tensor, temperature: float,
                 weights: LossWeights = LossWeights()) -> LossParts:
    """The weighted sum (see the module doc); ``texts`` None or fewer than 2: no text term."""
    s = F.normalize(student, dim=-1)
    t = F.normalize(teacher.detach(), dim=-1)
    k = scale / temperature
    l1 = l1_unit(s, t)
    total = weights.l1 * l1
    kl_it = torch.zeros((), device=s.device)
    if texts is not None and texts.shape[0] >= 2 and weights.image_text > 0:
        u = F.normalize(texts.detach(), dim=-1)
        s_it, t_it = k * s @ u.T, k * t @ u.T
        kl_it = (kl_rows(s_it, t_it, temperature) + kl_rows(s_it.T, t_it.T, temperature)) / 2
        total = total + weights.image_text * kl_it
    kl_ii = torch.zeros((), device=s.device)
    if s.shape[0] >= 2 and weights.image_image > 0:
        kl_ii = kl_rows(k * s @ t.T, k * t @ t.T, temperature)
        total = total + weights.image_image * kl_ii
    return LossParts(total=total, l1=float(l1.detach()), kl_image_text=float(kl_it.detach()),
                     kl_image_image=float(kl_ii.detach()))


def held_out_agreement(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Mean cosine between the student's and the teacher's embeddings of the same images."""
    return float(F.cosine_similarity(student, teacher, dim=-1).mean())
