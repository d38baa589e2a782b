"""One test harness for vidgen's serialisable classes (after Keras's `run_layer_test`).

`run_serialization_test(cls, init_kwargs, inputs, ...)` builds the object and
checks, in the manner of Keras's `run_layer_test` and KerasHub's
`run_model_saving_test`:

- the output shape (`expected_output_shape`, nested like the output);
- the number of trainable weights (`expected_num_trainable_weights`);
- `get_config` -> `from_config`: the same config, and the same output once the
  clone has the original's weights;
- `.keras` save -> `load_model`: the same output. A layer is saved inside a
  functional model made of it; a model is saved itself; a loss is saved as the
  loss of a compiled one-layer model.

`inputs` is a tuple of the positional arguments of a call (a single array is
one argument); `call_kwargs` go to every call.
"""

from __future__ import annotations

import copy

import keras
import numpy as np


def _as_args(inputs) -> tuple:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def _outputs(obj, args, call_kwargs):
    return keras.tree.map_structure(np.asarray, obj(*args, **call_kwargs))


def _assert_same(a, b, atol, what):
    for x, y in zip(keras.tree.flatten(a), keras.tree.flatten(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, err_msg=what)


def _saved_and_loaded(obj, args, call_kwargs, path):
    """The outputs of `obj` after a `.keras` round trip (see the module doc)."""
    if isinstance(obj, keras.losses.Loss):
        model = keras.Sequential([keras.Input(args[1].shape[1:]), keras.layers.Identity()])
        model.compile(optimizer="sgd", loss=obj)
        model.save(path)
        loaded = keras.saving.load_model(path).loss
        assert type(loaded) is type(obj) and loaded.get_config() == obj.get_config()
        return _outputs(loaded, args, call_kwargs)
    if isinstance(obj, keras.Model):
        obj.save(path)
        loaded = keras.saving.load_model(path)
        assert type(loaded) is type(obj)
        return _outputs(loaded, args, call_kwargs)
    symbolic = keras.tree.map_structure(lambda x: keras.Input(np.shape(x)[1:]), list(args))
    model = keras.Model(keras.tree.flatten(symbolic), obj(*symbolic, **call_kwargs))
    flat = [np.asarray(x) for x in keras.tree.flatten(list(args))]
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer) for layer in loaded.layers].count(type(obj)) == 1
    return keras.tree.map_structure(np.asarray, loaded(flat))


def run_serialization_test(cls, init_kwargs: dict, inputs, tmp_path, *,
                           expected_output_shape=None, expected_num_trainable_weights=None,
                           call_kwargs: dict | None = None, atol: float = 1e-6):
    """Builds `cls(**init_kwargs)` and runs the checks of the module doc on it.

    Args:
        cls: a registered layer, model or loss class.
        init_kwargs: its constructor arguments (layer objects for containers).
        inputs: the positional call arguments (a tuple), or the one argument.
        tmp_path: a folder for the `.keras` file.
        expected_output_shape: the output's shape, or the list of the shapes
            of its flattened outputs (None: not checked).
        expected_num_trainable_weights: None: not checked.
        call_kwargs: keyword arguments of every call.
        atol: tolerance of the output comparisons.

    Returns:
        The object built (for further checks).
    """
    call_kwargs = call_kwargs or {}
    args = _as_args(inputs)
    obj = cls(**init_kwargs)
    output = _outputs(obj, args, call_kwargs)
    if expected_output_shape is not None:
        shapes = [tuple(np.shape(x)) for x in keras.tree.flatten(output)]
        want = expected_output_shape
        want = [tuple(want)] if all(isinstance(d, int) for d in want) else [
            tuple(w) for w in want]
        assert shapes == want, f"{cls.__name__}: output shapes {shapes}, expected {want}"
    if expected_num_trainable_weights is not None:
        got = len(getattr(obj, "trainable_weights", []))
        assert got == expected_num_trainable_weights, (
            f"{cls.__name__}: {got} trainable weights, expected {expected_num_trainable_weights}")

    config = obj.get_config()
    clone = cls.from_config(copy.deepcopy(config))  # Wrapper.from_config pops "layer"
    if getattr(obj, "weights", None):
        if not clone.built:
            _outputs(clone, args, call_kwargs)
        clone.set_weights(obj.get_weights())
    # Compared once both are built (a wrapper's config holds its layer's build config).
    assert clone.get_config() == config, f"{cls.__name__}: config changed in from_config"
    _assert_same(output, _outputs(clone, args, call_kwargs), atol,
                 f"{cls.__name__}: from_config clone with copied weights")

    loaded = _saved_and_loaded(obj, args, call_kwargs, str(tmp_path / f"{cls.__name__}.keras"))
    _assert_same(output, loaded, atol, f"{cls.__name__}: after a .keras round trip")
    return obj
