"""How many replicas share a step: the divisor of every loss term reduced by hand."""

from __future__ import annotations


def num_replicas() -> int:
    """Replicas of the current tf.distribute strategy (1 outside any)."""
    # Imported where needed, as the models' train_step imports TensorFlow: the layers
    # themselves use only keras.
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync
