"""vidgen: recurrent video prediction and generation with TensorFlow / Keras 3.

Importing vidgen registers its Keras classes (models, layers, losses, the
learning-rate schedule), so that `keras.saving.load_model("RUN/model.keras")`
works in any process. It does so without importing Keras or TensorFlow
itself: the classes register when Keras is imported, or at once if it
already is (`vidgen.import_hooks`). So the LiteRT runner and the `--help` of
every command line start in a fraction of a second, and run where only
`vidgen[lite]` is installed.
"""

__version__ = "0.2.0"

from vidgen.import_hooks import register_keras_classes  # noqa: E402

register_keras_classes()
