"""vidgen: recurrent video prediction and generation with TensorFlow / Keras 3."""

__version__ = "0.1.0"
