"""PyTorch reimplementation of STNeuroNet (Soltanian-Zadeh et al., PNAS 2019).

Sub-modules
-----------
model
    :class:`~stnn.model.STNeuroNet` and the mapping to the authors' TF checkpoint.
tf_compat
    TF-1 'SAME' padding, count-excluding average pooling and legacy resizing.
preprocess
    Crop, temporal binning, homomorphic filtering and SD normalisation (streaming).
labels
    Spike detection on GT traces and spatio-temporal training labels.
postprocess
    Probability maps -> neuron masks (threshold, watershed, fusion across windows).
infer
    :func:`~stnn.infer.segment`: whole-movie streaming inference.
tiling, overlap
    Spatial tiles for large frames, and the tile margin measured on the movie.
precision, fuse
    Precision choice (bfloat16 where native) and inference copies (batch norm folded).
train, tune, perf, train_perf
    Training from scratch, post-processing tuning, inference and training speed.
weights
    Shipped weights and :func:`~stnn.weights.pretrained`.

This package does not import ``bench`` or ``methods``.
"""

from .labels import dprime_threshold, exponential_template, label_map, temporal_labels
from .model import CHECKPOINT_NAMES, STNeuroNet, checkpoint_name_map, load_tf_variables
from .postprocess import PostprocessConfig, postprocess
from .preprocess import PreprocessConfig, preprocess, whiten
from .weights import pretrained


def segment(*args, **kwargs):
    """See :func:`stnn.infer.segment` (imported lazily)."""
    from .infer import segment as _segment

    return _segment(*args, **kwargs)


__all__ = [
    "STNeuroNet",
    "CHECKPOINT_NAMES",
    "checkpoint_name_map",
    "load_tf_variables",
    "PreprocessConfig",
    "preprocess",
    "whiten",
    "dprime_threshold",
    "exponential_template",
    "temporal_labels",
    "label_map",
    "PostprocessConfig",
    "postprocess",
    "pretrained",
    "segment",
]
