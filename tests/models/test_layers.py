import keras
import numpy as np
import pytest

from vidgen.models import ConvGRUCell, ConvLSTMCell, FrameDecoder, FrameEncoder


def _round_trip(layer, path, *inputs):
    """Saves `layer` inside a tiny functional model and checks outputs survive loading."""
    symbolic = keras.tree.map_structure(lambda x: keras.Input(x.shape[1:]), list(inputs))
    outputs = layer(*symbolic)
    model = keras.Model(keras.tree.flatten(symbolic), outputs)
    flat = keras.tree.flatten(list(inputs))
    before = model.predict(flat, verbose=0)
    model.save(path)
    after = keras.saving.load_model(path).predict(flat, verbose=0)
    for a, b in zip(keras.tree.flatten(before), keras.tree.flatten(after)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("cls, states", [(ConvLSTMCell, 2), (ConvGRUCell, 1)])
def test_cells_shape_config_and_state(cls, states, tmp_path):
    cell = cls(6, kernel_size=3, name="cell")
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    init = cell.initial_states(x)
    h, new = cell(x, init)
    assert h.shape == (2, 8, 8, 6) and len(new) == states == cls.num_states
    h2, _ = cell(x, new)
    assert not np.allclose(h, h2), "the state carries information between steps"
    clone = cls.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    state_inputs = [np.asarray(s) + 0.1 for s in new]
    _round_trip(cls(6), str(tmp_path / "cell.keras"), x, state_inputs)


@pytest.mark.parametrize("cls", [ConvLSTMCell, ConvGRUCell])
def test_cell_bad_arguments(cls):
    with pytest.raises(ValueError, match="filters must be positive. Received: filters=0"):
        cls(0)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd"):
        cls(4, kernel_size=2)


def test_lstm_forget_bias_is_initialised():
    cell = ConvLSTMCell(4, forget_bias=1.0)
    cell.build((None, 8, 8, 2))
    bias = np.asarray(cell.gates.bias)
    np.testing.assert_allclose(bias[4:8], 1.0)
    np.testing.assert_allclose(bias[:4], 0.0)


def test_encoder_decoder_shapes_and_round_trip(tmp_path):
    frames = np.random.default_rng(1).random((3, 16, 16, 1)).astype("float32")
    encoder = FrameEncoder((4, 8))
    features, skips = encoder(frames)
    assert features.shape == (3, 4, 4, 8)
    assert [s.shape for s in skips] == [(3, 4, 4, 8), (3, 8, 8, 4)]
    decoder = FrameDecoder((8, 4), out_channels=5)
    maps = decoder(features, skips)
    assert maps.shape == (3, 16, 16, 5)
    assert FrameEncoder.from_config(encoder.get_config()).get_config() == encoder.get_config()
    assert FrameDecoder.from_config(decoder.get_config()).get_config() == decoder.get_config()
    _round_trip(FrameEncoder((4, 8)), str(tmp_path / "enc.keras"), frames)
    _round_trip(FrameDecoder((8, 4), 2), str(tmp_path / "dec.keras"),
                np.asarray(features), [np.asarray(s) for s in skips])
    with pytest.raises(ValueError, match="filters must be two positive integers"):
        FrameEncoder((4,))
