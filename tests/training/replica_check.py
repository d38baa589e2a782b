"""Run by test_replicas.py in a fresh process: 1 replica vs 2 replicas on one global batch.

Two logical CPU devices must be configured before TensorFlow initialises,
which the test process has already done; hence a separate interpreter.
Prints one JSON line: the losses and the largest gradient difference.
One strategy per process: a second MirroredStrategy in the same process
reuses collective instance keys and fails (tensorflow/tensorflow#62790).

Usage: python -m tests.training.replica_check sdna|cdna|gan
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests.tiny import TINY_MODEL  # noqa: E402
from vidgen.models import (  # noqa: E402
    FrameDiscriminator,
    VideoDiscriminator,
    VideoGAN,
    VideoPredictor,
)
from vidgen.training.losses import ReconstructionLoss  # noqa: E402

MODE = sys.argv[1]
TINY = {**TINY_MODEL, "head": "cdna" if MODE == "cdna" else "sdna"}
clips = np.random.default_rng(0).random((4, 6, 16, 16, 1)).astype("float32")


def one_step(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = VideoPredictor(**TINY)
        loss = ReconstructionLoss(l1_weight=1.0, ssim_weight=0.5)
        # SGD with learning rate 1: the weight change of one step is the gradient.
        if MODE == "gan":
            model = VideoGAN(model, FrameDiscriminator(16, 1, (4, 8)),
                             VideoDiscriminator(16, 1, (4,)), critic_frames=2)
            model.compile(keras.optimizers.SGD(1.0), keras.optimizers.SGD(1.0), loss,
                          feature_matching_weight=0.5)
        else:
            model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss)
    before = [np.asarray(v) for v in model.trainable_variables]
    data = tf.data.Dataset.from_tensor_slices((clips[:, :3], clips[:, 3:])).batch(4)
    history = model.fit(data, epochs=1, verbose=0, validation_data=data)
    grads = [b - np.asarray(v) for b, v in zip(before, model.trainable_variables)]
    return {k: float(v[0]) for k, v in history.history.items()}, grads


single, g1 = one_step(tf.distribute.get_strategy())
double, g2 = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print(json.dumps({"single": single, "double": double,
                  "max_grad_diff": max(float(np.abs(a - b).max()) for a, b in zip(g1, g2)),
                  "max_grad": max(float(np.abs(a).max()) for a in g1)}))
