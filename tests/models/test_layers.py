import keras
import numpy as np
import pytest

import vidgen.models
from tests.harness import run_serialization_test
from vidgen.models import ConvGRUCell, ConvLSTMCell, FrameDecoder, FrameEncoder, SpectralNormConv

X = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("cls, states, weights", [(ConvLSTMCell, 2, 2), (ConvGRUCell, 1, 4)])
def test_cells_shape_config_and_state(cls, states, weights, tmp_path):
    state_inputs = [np.full((2, 8, 8, 6), 0.1 * (i + 1), "float32") for i in range(states)]
    cell = run_serialization_test(
        cls, dict(filters=6, kernel_size=3, name="cell"), (X, state_inputs), tmp_path,
        expected_output_shape=[(2, 8, 8, 6)] * (1 + states),
        expected_num_trainable_weights=weights)
    init = cell.initial_states(X)
    h, new = cell(X, init)
    assert h.shape == (2, 8, 8, 6) and len(new) == states == cls.num_states
    h2, _ = cell(X, new)
    assert not np.allclose(h, h2), "the state carries information between steps"


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
    encoder = run_serialization_test(
        FrameEncoder, dict(filters=(4, 8)), frames, tmp_path,
        expected_output_shape=[(3, 4, 4, 8), (3, 4, 4, 8), (3, 8, 8, 4)],
        expected_num_trainable_weights=4)
    features, skips = encoder(frames)
    assert features.shape == (3, 4, 4, 8)
    assert [s.shape for s in skips] == [(3, 4, 4, 8), (3, 8, 8, 4)]
    run_serialization_test(
        FrameDecoder, dict(filters=(8, 4), out_channels=5),
        (np.asarray(features), [np.asarray(s) for s in skips]), tmp_path,
        expected_output_shape=(3, 16, 16, 5), expected_num_trainable_weights=8)
    with pytest.raises(ValueError, match="filters must be two positive integers"):
        FrameEncoder((4,))


def test_spectral_norm_conv_round_trip(tmp_path):
    conv = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    run_serialization_test(SpectralNormConv, dict(layer=conv), X, tmp_path,
                           expected_output_shape=(2, 4, 4, 4),
                           expected_num_trainable_weights=2)
    with pytest.raises(ValueError, match="wraps a convolution layer"):
        SpectralNormConv(keras.layers.Dense(3))(X)


# ----------------------------------------------------------------- golden numbers

def _conv_same(x, kernel, bias):
    """NumPy 2-D convolution, stride 1, zero "same" padding (as keras.layers.Conv2D)."""
    k = kernel.shape[0]
    r = k // 2
    padded = np.pad(x, [(0, 0), (r, r), (r, r), (0, 0)])
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],), np.float64)
    for dy in range(k):
        for dx in range(k):
            patch = padded[:, dy:dy + x.shape[1], dx:dx + x.shape[2]]
            out += patch @ kernel[dy, dx]
    return out + bias


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _deterministic(conv):
    """Fixed, non-symmetric weights for `conv` (a built Conv2D); returns (kernel, bias)."""
    kernel = 0.1 * np.sin(np.arange(np.prod(conv.kernel.shape))).reshape(conv.kernel.shape)
    bias = 0.1 * np.cos(np.arange(conv.bias.shape[0]))
    conv.kernel.assign(kernel.astype("float32"))
    conv.bias.assign(bias.astype("float32"))
    return kernel.astype("float32").astype(np.float64), bias.astype("float32").astype(np.float64)


# sum(h), sum(c), then single values, as in the tests below.
GOLDEN_LSTM = [-2.585069, -5.113363, 0.067318, 0.072249, -0.291414]
GOLDEN_GRU = [0.17627, 0.275838, -0.165514, -0.208963]


GOLDEN_X = (np.linspace(-1.0, 1.0, 2 * 5 * 5 * 3).reshape(2, 5, 5, 3)).astype("float32")


def _golden_state(filters, offset):
    return (0.5 * np.cos(np.arange(2 * 5 * 5 * filters) + offset)).reshape(
        2, 5, 5, filters).astype("float32")


def test_conv_lstm_cell_golden_numbers():
    """Gates in the order i, f, g, o (Shi et al. 2015); a reordering changes the numbers."""
    cell = ConvLSTMCell(4, kernel_size=3)
    cell.build(GOLDEN_X.shape)
    kernel, bias = _deterministic(cell.gates)
    h0, c0 = _golden_state(4, 0), _golden_state(4, 1)
    h, (h_state, c) = cell(GOLDEN_X, [h0, c0])
    h, h_state, c = np.asarray(h), np.asarray(h_state), np.asarray(c)

    z = _conv_same(np.concatenate([GOLDEN_X, h0], -1).astype(np.float64), kernel, bias)
    i, f, g, o = np.split(z, 4, axis=-1)
    want_c = _sigmoid(f) * c0 + _sigmoid(i) * np.tanh(g)
    want_h = _sigmoid(o) * np.tanh(want_c)
    np.testing.assert_allclose(c, want_c, atol=1e-5)
    np.testing.assert_allclose(h, want_h, atol=1e-5)
    np.testing.assert_array_equal(h, h_state)
    # Checksums of this implementation (recorded once).
    np.testing.assert_allclose([h.sum(), c.sum(), h[0, 0, 0, 0], h[1, 4, 4, 3], c[0, 2, 3, 1]],
                               GOLDEN_LSTM, atol=1e-5)


def test_conv_gru_cell_golden_numbers():
    """Update gate z, then reset gate r, then the candidate on [x, r * h] (Ballas et al.)."""
    cell = ConvGRUCell(4, kernel_size=3)
    cell.build(GOLDEN_X.shape)
    gates_kernel, gates_bias = _deterministic(cell.gates)
    cand_kernel, cand_bias = _deterministic(cell.candidate)
    h0 = _golden_state(4, 0)
    h, (h_state,) = cell(GOLDEN_X, [h0])
    h, h_state = np.asarray(h), np.asarray(h_state)

    x = GOLDEN_X.astype(np.float64)
    zr = _sigmoid(_conv_same(np.concatenate([x, h0], -1), gates_kernel, gates_bias))
    z, r = np.split(zr, 2, axis=-1)
    n = np.tanh(_conv_same(np.concatenate([x, r * h0], -1), cand_kernel, cand_bias))
    want = (1.0 - z) * h0 + z * n
    np.testing.assert_allclose(h, want, atol=1e-5)
    np.testing.assert_array_equal(h, h_state)
    np.testing.assert_allclose([h.sum(), h[0, 0, 0, 0], h[1, 4, 4, 3], h[0, 2, 3, 1]],
                               GOLDEN_GRU, atol=1e-5)


def test_every_registered_class_of_vidgen_models_is_exported():
    """vidgen.models exports (and so registers on import) every serialisable class it defines."""
    registered = {cls for name, cls in keras.saving.get_custom_objects().items()
                  if name.startswith("vidgen>") and cls.__module__.startswith("vidgen.models.")}
    assert registered == {getattr(vidgen.models, name) for name in vidgen.models.__all__}
