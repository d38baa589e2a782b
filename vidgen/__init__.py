"""vidgen: recurrent video prediction and generation with TensorFlow / Keras 3.

Importing vidgen registers its Keras classes (models, layers, losses, the
learning-rate schedule), so that `keras.saving.load_model("RUN/model.keras")`
works in any process.
"""

__version__ = "0.1.0"

from vidgen import models  # noqa: E402,F401  (registers the serializable classes)
from vidgen.postprocess import residual_denoiser  # noqa: E402,F401
from vidgen.training import budget_cosine_decay, losses  # noqa: E402,F401
