"""The data layer: sources, prepared TFRecord datasets and the tf.data pipeline."""
