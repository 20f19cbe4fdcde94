"""Query steering with linear probes.

A probe is a logistic regression on unit image embeddings for one binary attribute (e.g.
"the image carries drawn text"). Its unit direction, added to a TEXT query vector times a
scale in [-2, 2] and renormalised, pushes results towards (or away from) the attribute.

* ``probe``: the stored ``Probe`` model (JSON) and its errors;
* ``fit``: fitting a probe on labelled embeddings (scikit-learn);
* ``labels``: reading labelled image sets (folders or a labels file);
* ``train``: encode + fit + save, what ``clipsearch probe train`` runs;
* ``store``: ``ProbeStore`` (``<data_dir>/probes/<name>.json``, model checks);
* ``steer``: ``apply_steer`` and ``parse_steer`` (the ``steer=<probe>:<scale>`` parameter).
"""

from clipsearch.steering.probe import Probe, ProbeMismatch, UnknownProbe
from clipsearch.steering.steer import MAX_SCALE, SteerSpec, apply_steer, parse_steer
from clipsearch.steering.store import ProbeStore

__all__ = ["MAX_SCALE", "Probe", "ProbeMismatch", "ProbeStore", "SteerSpec", "UnknownProbe",
           "apply_steer", "parse_steer"]
