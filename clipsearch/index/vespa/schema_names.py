"""Names shared by the Vespa package generator, the lint, the client and the test loopback.

One place for every identifier that appears both in ``vespa-app/`` and in requests, so that a
rename cannot leave the two out of step.
"""

from __future__ import annotations

from clipsearch.search import Fusion, Mode

APP_NAME = "clipsearch"
SCHEMA = "image"

# document fields
F_ID = "id"
F_CAPTION = "caption"  # all captions joined: the BM25 field
F_CAPTIONS = "captions"  # the list, for display
F_DATASET = "dataset"
F_CATEGORY = "category"
F_SPLIT = "split"
F_IMAGE_URI = "image_uri"
F_MODEL_ID = "model_id"
F_EMBEDDING = "embedding"

FILTER_FIELDS = (F_DATASET, F_CATEGORY, F_SPLIT)

# rank profiles: named exactly as the API's modes, plus the weighted hybrid variant
PROFILE_LEXICAL = Mode.lexical.value
PROFILE_VECTOR = Mode.vector.value
PROFILE_HYBRID = Mode.hybrid.value  # RRF
PROFILE_HYBRID_LINEAR = "hybrid-linear"  # alpha * normalize_linear(vector) + ...
PROFILE_HYBRID_SCORE = "hybrid-score"  # alpha * closeness + (1 - alpha) * saturated bm25
PROFILES = (PROFILE_LEXICAL, PROFILE_VECTOR, PROFILE_HYBRID, PROFILE_HYBRID_LINEAR,
            PROFILE_HYBRID_SCORE)

# functions exposed as match-features: each leg's score per hit
FN_LEXICAL = "lexical_score"
FN_VECTOR = "vector_score"

# query inputs
INPUT_Q = "query(q)"
INPUT_ALPHA = "query(alpha)"
INPUT_SATURATION = "query(saturation)"

# the RRF constant compiled into the ``hybrid`` profile (Vespa takes only a constant there)
RRF_K = 60

# the captions' language when CLIPSEARCH_VESPA_LANGUAGE is not set: set_language in the
# schema and model.locale on every query with text (so Vespa never detects it)
DEFAULT_LANGUAGE = "en"


def profile_for(mode: Mode, fusion: Fusion) -> str:
    """The rank profile a plan runs with."""
    if mode == Mode.hybrid and fusion == Fusion.linear:
        return PROFILE_HYBRID_LINEAR
    if mode == Mode.hybrid and fusion == Fusion.score:
        return PROFILE_HYBRID_SCORE
    return mode.value  # rrf_textbook runs the window RRF profile and is fused by the client


def expected_inputs(dim: int) -> dict[str, str]:
    """Every query input the client sends, with the type the schema must declare."""
    return {INPUT_Q: f"tensor<float>(x[{dim}])", INPUT_ALPHA: "double",
            INPUT_SATURATION: "double"}


# which inputs the client sends to which profile
INPUTS_SENT: dict[str, tuple[str, ...]] = {
    PROFILE_LEXICAL: (),
    PROFILE_VECTOR: (INPUT_Q,),
    PROFILE_HYBRID: (INPUT_Q,),
    PROFILE_HYBRID_LINEAR: (INPUT_Q, INPUT_ALPHA),
    PROFILE_HYBRID_SCORE: (INPUT_Q, INPUT_ALPHA, INPUT_SATURATION),
}
