"""VideoPredictor: encoder -> stacked convolutional recurrence -> decoder, autoregressive."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vidgen.models.conv_gru_cell import ConvGRUCell
from vidgen.models.conv_lstm_cell import ConvLSTMCell
from vidgen.models.frame_decoder import FrameDecoder
from vidgen.models.frame_encoder import FrameEncoder

CELLS = {"lstm": ConvLSTMCell, "gru": ConvGRUCell}
HEADS = ("sdna", "cdna", "dna", "flow", "pixels")


def num_replicas() -> int:
    """Replicas of the current tf.distribute strategy (1 outside any)."""
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def _hard(logits):
    """One-hot of the largest logit along the last axis (a "sharp" softmax)."""
    return ops.one_hot(ops.argmax(logits, axis=-1), logits.shape[-1], dtype=logits.dtype)


def _composite(moved, maps, sharp: bool):
    """mask * moved + (1 - mask) * generated; `maps` holds the mask logit, then pixel logits."""
    mask = ops.sigmoid(maps[..., :1])
    mask = ops.round(mask) if sharp else mask
    return mask * moved + (1.0 - mask) * ops.sigmoid(maps[..., 1:])


@keras.saving.register_keras_serializable(package="vidgen")
class VideoPredictor(keras.Model):
    """Predicts the frames that follow a context clip, one at a time.

    Models p(v_t | v_<t): every frame goes through `FrameEncoder`, a stack of
    convolutional recurrent cells carries the past, and `FrameDecoder` emits
    the next frame. With `head="dna"` the next frame is the last frame moved
    by per-pixel normalised kernels (dynamic neural advection), composited
    with generated pixels by a per-pixel mask: most pixels of a next frame
    are pixels of the last one, moved, which a CNN predicts far more easily
    than the pixels themselves. `head="pixels"` emits sigmoid pixels.

    Prediction is autoregressive: after the context, each predicted frame is
    fed back as the next input, so the prediction for frame t never sees
    frame t or later. Training (`train_step`) unrolls the same loop; with
    scheduled sampling the fed-back frame is the true frame with a
    probability that decays linearly to 0 over `sampling_steps` optimizer
    steps, so the model learns to consume its own outputs.

    Args:
        frame_size: height and width of the (square) frames; divisible by 4.
        channels: 1 or 3.
        horizon: frames predicted by `call`; `rollout` takes any horizon.
        encoder_filters: channels of the encoder's two stride-2 stages.
        core_filters: channels of each recurrent layer (one per layer).
        cell: "lstm" (ConvLSTM) or "gru" (ConvGRU).
        kernel_size: kernel of the recurrent convolutions.
        decoder_filters: channels of the decoder's two upsampling stages.
        head: "sdna" (separable per-pixel kernels), "cdna" (a few kernels per
            clip), "dna" (one k x k kernel per pixel), "flow" (a dense flow
            field warps the last frame bilinearly; a gate and a residual
            correct it; the untrained model copies the last frame exactly,
            for natural video) or "pixels" (sigmoid pixels).
        dna_kernel: side of the motion kernels: the largest motion per frame
            is dna_kernel // 2 pixels (for "flow", the largest flow).
        sampling_steps: optimizer steps over which the teacher probability
            decays from 1 to 0; 0 trains on the model's own outputs only.
        context_loss_weight: weight of the next-frame loss on the context
            frames (predicting context frame t+1 from frames up to t).
        latent_dim: size of a per-step latent vector z_t, broadcast over the
            1/4-resolution features (0: deterministic). Training samples z_t from a
            posterior q(z_t | past, true next frame), inference from the
            learned prior p(z_t | past) (SVG-LP), so `rollout` can draw
            several different futures.
        kl_weight: weight of KL(q || p) (summed over z's elements, per step).
        output_floor: pixels of the frames `rollout` and `call` return that
            are below this value become 0 (0: none). Only the returned frames:
            the model still feeds back its unfloored prediction, and `step`
            returns it. A model trained on a likelihood spreads a faint haze
            where it is unsure where an object goes; on black backgrounds the
            floor removes it (`vidgen train` can calibrate the value on the
            validation split: `train.output_floor_tolerance`).
        seed: seed of the scheduled-sampling draws.

    Reference:
        Shi et al. 2015 (ConvLSTM); Finn et al., "Unsupervised Learning for
        Physical Interaction through Video Prediction", NeurIPS 2016 (DNA);
        Bengio et al., "Scheduled Sampling for Sequence Prediction with
        Recurrent Neural Networks", NeurIPS 2015; Denton & Fergus,
        "Stochastic Video Generation with a Learned Prior", ICML 2018.

    Example:

        model = VideoPredictor(frame_size=64, channels=1, horizon=10)
        future = model(context)                  # (batch, 10, 64, 64, 1)
        longer = model.rollout(context, 30)      # (batch, 30, 64, 64, 1)
    """

    def __init__(self, frame_size: int = 64, channels: int = 1, horizon: int = 10,
                 encoder_filters=(32, 64), core_filters=(64, 64), cell: str = "lstm",
                 kernel_size: int = 3, decoder_filters=(64, 32), head: str = "cdna",
                 dna_kernel: int = 9, cdna_kernels: int = 4, difference_input: bool = True,
                 sharp: bool = False, sampling_steps: int = 0,
                 context_loss_weight: float = 1.0, latent_dim: int = 0, kl_weight: float = 1e-4,
                 output_floor: float = 0.0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if frame_size <= 0 or frame_size % 4:
            raise ValueError(
                f"frame_size must be a positive multiple of 4. Received: frame_size={frame_size}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={channels}")
        if horizon <= 0:
            raise ValueError(f"horizon must be positive. Received: horizon={horizon}")
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}. Received: cell={cell!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}. Received: head={head!r}")
        if dna_kernel <= 0 or dna_kernel % 2 == 0:
            raise ValueError(f"dna_kernel must be a positive odd number. Received: {dna_kernel}")
        core_filters = tuple(int(f) for f in core_filters)
        if not core_filters or min(core_filters) <= 0:
            raise ValueError(f"core_filters must be positive integers. Received: {core_filters}")
        if cdna_kernels <= 0:
            raise ValueError(f"cdna_kernels must be positive. Received: {cdna_kernels}")
        if sampling_steps < 0:
            raise ValueError(f"sampling_steps must be >= 0. Received: {sampling_steps}")
        if not 0.0 <= output_floor < 1.0:
            raise ValueError(f"output_floor must be in [0, 1). Received: {output_floor}")
        if latent_dim < 0 or kl_weight < 0:
            raise ValueError(f"latent_dim and kl_weight must be >= 0. Received: latent_dim="
                             f"{latent_dim}, kl_weight={kl_weight}")
        self.frame_size = frame_size
        self.channels = channels
        self.horizon = horizon
        self.encoder_filters = tuple(int(f) for f in encoder_filters)
        self.core_filters = core_filters
        self.cell = cell
        self.kernel_size = kernel_size
        self.decoder_filters = tuple(int(f) for f in decoder_filters)
        self.head = head
        self.dna_kernel = dna_kernel
        self.cdna_kernels = cdna_kernels
        self.difference_input = difference_input
        self.sharp = sharp
        self.sampling_steps = sampling_steps
        self.context_loss_weight = context_loss_weight
        self.output_floor = float(output_floor)
        self.latent_dim = latent_dim
        self.kl_weight = kl_weight
        self.seed = seed

        self.encoder = FrameEncoder(self.encoder_filters, name="encoder")
        self.cells = [CELLS[cell](f, kernel_size, name=f"core_{i}")
                      for i, f in enumerate(core_filters)]
        kk = dna_kernel * dna_kernel
        out = {"sdna": 2 * dna_kernel + 1 + channels, "dna": kk + 1 + channels,
               "cdna": cdna_kernels + 1 + channels, "flow": 3 + channels,
               "pixels": channels}[head]
        self.decoder = FrameDecoder(self.decoder_filters, out, name="decoder")
        if latent_dim:
            # Mean and log-variance of z_t at 1/4 resolution: the prior sees the
            # recurrent state (the past), the posterior also the true next frame.
            self.prior_net = keras.layers.Conv2D(2 * latent_dim, 3, padding="same",
                                                 name="prior")
            self.posterior_net = keras.layers.Conv2D(2 * latent_dim, 3, padding="same",
                                                     name="posterior")
        if head == "cdna":
            # Start every kernel as the identity (all weight on the centre tap) so the
            # untrained model copies the last frame instead of blurring it.
            bias = np.zeros((cdna_kernels, kk), "float32")
            bias[:, kk // 2] = 2.0
            self.kernel_head = keras.layers.Dense(
                cdna_kernels * kk, bias_initializer=keras.initializers.Constant(bias.ravel()),
                name="kernel_head")
        eye = np.eye(dna_kernel * dna_kernel, dtype="float32")
        self._shift_kernel = ops.convert_to_tensor(
            eye.reshape(dna_kernel, dna_kernel, 1, dna_kernel * dna_kernel))
        eye = np.eye(dna_kernel, dtype="float32")
        self._row_kernel = ops.convert_to_tensor(eye.reshape(dna_kernel, 1, 1, dna_kernel))
        self._column_kernel = ops.convert_to_tensor(eye.reshape(1, dna_kernel, 1, dna_kernel))
        self.seed_generator = keras.random.SeedGenerator(seed, name="sampling_seed")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.frame_mse_tracker = keras.metrics.Mean(name="frame_mse")
        self.teacher_tracker = keras.metrics.Mean(name="teacher_prob")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        # Build every weight now, so a fresh model can be saved, loaded or
        # restored from a backup before it has seen data.
        self.build((None, None, frame_size, frame_size, channels))

    # ----------------------------------------------------------------- layers

    def build(self, input_shape):
        size = self.frame_size
        encoder_in = (None, size, size, self.channels * (2 if self.difference_input else 1))
        self.encoder.build(encoder_in)
        quarter = size // 4
        x_channels = self.encoder_filters[1]
        for cell in self.cells:
            cell.build((None, quarter, quarter, x_channels))
            x_channels = cell.filters
        enc = self.encoder_filters
        if self.latent_dim:
            self.prior_net.build((None, quarter, quarter, x_channels))
            self.posterior_net.build((None, quarter, quarter, x_channels + enc[1]))
            x_channels += self.latent_dim
        self.decoder.build((None, quarter, quarter, x_channels),
                           [(None, quarter, quarter, enc[1]),
                            (None, size // 2, size // 2, enc[0])])
        if self.head == "cdna":
            self.kernel_head.build((None, 2 * x_channels))  # x_channels includes z
        if self.head == "sdna":
            # Start as "copy the frame": centre taps favoured, the mask on moved pixels.
            k = self.dna_kernel
            bias = np.zeros(self.decoder.out_channels, "float32")
            bias[k // 2] = bias[k + k // 2] = 1.0
            bias[2 * k] = 3.0
            # The decoder's last convolution emits 2x2 blocks of these maps.
            self.decoder.out.bias.assign(np.tile(bias, 4))
        if self.head == "flow":
            # Maps: flow (dy, dx), gate, residual. Gate and residual start at exactly 0, so
            # the untrained model returns the last frame (copy-last) and training can only
            # improve on it; the flow starts small and random (a flow of exactly 0 would sit
            # on the bilinear kernel's kink, where its gradient vanishes).
            kernel = np.array(self.decoder.out.kernel.numpy())
            mask = np.tile(np.arange(self.decoder.out_channels) >= 2, 4)
            kernel[..., mask] = 0.0
            kernel[..., ~mask] *= 0.1
            self.decoder.out.kernel.assign(kernel)
            self.decoder.out.bias.assign(np.zeros(4 * self.decoder.out_channels, "float32"))
        super().build(input_shape)

    @property
    def state_shapes(self) -> list[tuple[int, int, int]]:
        """Shape (without batch) of every recurrent state tensor, in `step` order."""
        q = self.frame_size // 4
        shapes = [(q, q, c.filters) for c in self.cells for _ in range(c.num_states)]
        if self.difference_input:
            # The previous input frame, for the frame difference the encoder sees.
            shapes.append((self.frame_size, self.frame_size, self.channels))
        return shapes

    def initial_states(self, batch_size) -> list:
        """Zero recurrent states for a batch."""
        return [ops.zeros((batch_size,) + s) for s in self.state_shapes]

    def _advect(self, frame, weights):
        """Moves pixels of `frame` (B, H, W, C) by per-pixel kernels `weights` (B, H, W, k*k).

        Output pixel (y, x) is sum_j weights[y, x, j] * frame[y + dy_j, x + dx_j]
        over the k*k offsets (dy, dx) in [-k//2, k//2], the frame mirrored at
        its borders.
        """
        r = self.dna_kernel // 2
        return self._weighted_shifts(frame, weights, r, r, self._shift_kernel)

    def _shift(self, frame, weights, axis: int):
        """Moves pixels of `frame` along one axis by per-pixel 1-D kernels `weights` (..., k).

        Output pixel p is sum_j weights[p, j] * frame[p + (j - k//2) along `axis`],
        the frame mirrored at its borders. Two passes (rows, then columns) make a
        separable k x k motion kernel per pixel at 2k instead of k*k taps.
        """
        r = self.dna_kernel // 2
        if axis == 1:
            return self._weighted_shifts(frame, weights, r, 0, self._row_kernel)
        return self._weighted_shifts(frame, weights, 0, r, self._column_kernel)

    def _shifted_copies(self, frame, pad_rows: int, pad_cols: int, kernel):
        """Every shift of `frame` (B, H, W, C) given by a one-hot `kernel`: (B, C, H, W, taps).

        All shifted copies come from one convolution with the fixed one-hot
        `kernel`, which is far faster to differentiate than one slice per
        offset, and converts to TFLite (also int8) with builtin ops.
        """
        size, channels = self.frame_size, self.channels
        taps = kernel.shape[-1]
        pad = [[0, 0], [pad_rows, pad_rows], [pad_cols, pad_cols], [0, 0]]
        padded = ops.pad(frame, pad, mode="symmetric")
        # Channels into the batch: one single-channel convolution for every channel.
        padded = ops.reshape(ops.transpose(padded, (0, 3, 1, 2)),
                             (-1, size + 2 * pad_rows, size + 2 * pad_cols, 1))
        shifts = ops.conv(padded, kernel, padding="valid")
        return ops.reshape(shifts, (-1, channels, size, size, taps))

    def _weighted_shifts(self, frame, weights, pad_rows: int, pad_cols: int, kernel):
        """sum_j weights[..., j] * (frame shifted by offset j); offsets from a one-hot kernel."""
        shifts = self._shifted_copies(frame, pad_rows, pad_cols, kernel)
        moved = ops.sum(shifts * ops.expand_dims(weights, 1), axis=-1)
        return ops.transpose(moved, (0, 2, 3, 1))

    @property
    def noise_shape(self):
        """Shape (without batch) of one step's latent noise, or None for a deterministic model."""
        return (1, 1, self.latent_dim) if self.latent_dim else None

    def step(self, frame, states, sharp=None, noise=None):
        """One streaming step: the next frame from this frame and the recurrent states.

        Args:
            frame: (batch, H, W, C) in [0, 1], the latest frame (observed or predicted).
            states: list of recurrent states, shapes `state_shapes`.
            sharp: use the most likely kernel and mask component only
                (default: the model's `sharp` setting; training never does).
            noise: standard normal (batch, *noise_shape) for the latent variable
                (default: drawn from the model's seed generator); ignored by a
                deterministic model.

        Returns:
            (next frame (batch, H, W, C) in [0, 1], new states).
        """
        next_frame, new_states, _ = self._step(frame, states, sharp, noise)
        return next_frame, new_states

    def _latent(self, hidden, frame, noise, next_truth):
        """z and KL(q || p) of one step; the posterior when `next_truth` is given."""
        # z is one vector per clip and step (SVG's global latent), broadcast over the
        # 1/4-resolution grid: a spatial z (one per cell) was measured to smuggle the
        # next frame through the posterior (training loss fell, rollouts stayed at the
        # black-frame level) for any KL weight that left it useful.
        prior = ops.mean(ops.cast(self.prior_net(hidden), "float32"), axis=(1, 2),
                         keepdims=True)
        prior = ops.clip(prior, -10.0, 10.0)
        mu_p, logvar_p = prior[..., :self.latent_dim], prior[..., self.latent_dim:]
        mu, logvar, kl = mu_p, logvar_p, ops.convert_to_tensor(0.0)
        if next_truth is not None:
            x = next_truth
            if self.difference_input:
                x = ops.concatenate([next_truth, next_truth - frame], axis=-1)
            post = self.posterior_net(ops.concatenate([hidden, self.encoder(x)[0]], axis=-1))
            post = ops.mean(ops.cast(post, "float32"), axis=(1, 2), keepdims=True)
            post = ops.clip(post, -10.0, 10.0)
            mu, logvar = post[..., :self.latent_dim], post[..., self.latent_dim:]
            kl = 0.5 * (logvar_p - logvar
                        + (ops.exp(logvar) + ops.square(mu - mu_p)) / ops.exp(logvar_p) - 1.0)
            kl = ops.mean(ops.sum(kl, axis=(1, 2, 3)))
        if noise is None:
            noise = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        z = mu + ops.exp(0.5 * logvar) * noise                      # (B, 1, 1, latent)
        return z * ops.ones_like(hidden[..., :1]), kl

    def _step(self, frame, states, sharp=None, noise=None, next_truth=None):
        """`step`, plus the KL term of the latent variable (training passes `next_truth`)."""
        sharp = self.sharp if sharp is None else sharp
        x = frame
        if self.difference_input:
            # Motion is visible in the difference to the previous frame (zero at the start).
            x = ops.concatenate([frame, frame - states[-1]], axis=-1)
        features, skips = self.encoder(x)
        x = features
        new_states = []
        i = 0
        for cell in self.cells:
            x, s = cell(x, states[i:i + cell.num_states])
            new_states.extend(s)
            i += cell.num_states
        # Under a mixed-precision policy the layers compute in (b)float16; the states,
        # the motion maps and every frame stay float32.
        x = ops.cast(x, "float32")
        new_states = [ops.cast(s, "float32") for s in new_states]
        if self.difference_input:
            new_states.append(frame)
        kl = ops.convert_to_tensor(0.0)
        if self.latent_dim:
            z, kl = self._latent(x, frame, noise, next_truth)
            x = ops.concatenate([x, z], axis=-1)
        # Bounded logits keep every probability within [3e-7, 1 - 3e-7]: saturated
        # sigmoids on mostly black frames would otherwise give vanishing gradients
        # and values in float32's subnormal range.
        maps = ops.clip(ops.cast(self.decoder(x, skips), "float32"), -15.0, 15.0)
        if self.head == "pixels":
            return ops.sigmoid(maps), new_states, kl
        if self.head == "sdna":
            k = self.dna_kernel
            vertical, horizontal = maps[..., :k], maps[..., k:2 * k]
            if sharp:
                vertical, horizontal = _hard(vertical), _hard(horizontal)
            else:
                vertical = ops.softmax(vertical, axis=-1)
                horizontal = ops.softmax(horizontal, axis=-1)
            moved = self._shift(self._shift(frame, vertical, axis=1), horizontal, axis=2)
            return _composite(moved, maps[..., 2 * k:], sharp), new_states, kl
        if self.head == "flow":
            return self._flow(frame, maps), new_states, kl
        if self.head == "dna":
            kk = self.dna_kernel * self.dna_kernel
            weights = _hard(maps[..., :kk]) if sharp else ops.softmax(maps[..., :kk], axis=-1)
            return (_composite(self._advect(frame, weights), maps[..., kk:], sharp), new_states,
                    kl)
        n = self.cdna_kernels
        pooled = ops.concatenate([ops.mean(x, axis=(1, 2)), ops.max(x, axis=(1, 2))], axis=-1)
        logits = ops.reshape(ops.cast(self.kernel_head(pooled), "float32"),
                             (-1, n, self.dna_kernel ** 2))
        kernels = _hard(logits) if sharp else ops.softmax(logits, axis=-1)
        candidates = self._transform(frame, kernels)                 # (B, H, W, C, n)
        generated = ops.sigmoid(maps[..., n + 1:])                      # (B, H, W, C)
        candidates = ops.concatenate([candidates, ops.expand_dims(generated, -1)], axis=-1)
        masks = maps[..., :n + 1]                                       # (B, H, W, n + 1)
        masks = _hard(masks) if sharp else ops.softmax(masks, axis=-1)
        return ops.sum(candidates * ops.expand_dims(masks, 3), axis=-1), new_states, kl

    def _flow(self, frame, maps):
        """Next frame of the "flow" head: last + gate * (warp(last, flow) - last) + residual.

        The warp samples the last frame at p + flow(p) with bilinear weights,
        as two separable passes (rows, then columns) of the same shifted-copy
        machinery as "sdna": the bilinear weight of offset j is
        max(0, 1 - |flow - j|), so only builtin ops (conv, abs, relu) are
        needed and the step converts to TFLite int8. The flow is bounded by
        dna_kernel // 2 pixels per frame (a smooth tanh bound).
        """
        r = float(self.dna_kernel // 2)
        offsets = ops.convert_to_tensor(
            np.arange(-(self.dna_kernel // 2), self.dna_kernel // 2 + 1, dtype="float32"))
        flow = r * ops.tanh(maps[..., :2] / r)
        vertical = ops.relu(1.0 - ops.abs(flow[..., :1] - offsets))
        horizontal = ops.relu(1.0 - ops.abs(flow[..., 1:2] - offsets))
        warped = self._shift(self._shift(frame, vertical, axis=1), horizontal, axis=2)
        gate = ops.tanh(maps[..., 2:3])
        residual = 0.5 * ops.tanh(maps[..., 3:])
        return ops.clip(frame + gate * (warped - frame) + residual, 0.0, 1.0)

    def _transform(self, frame, kernels):
        """Applies each clip's own `n` normalised kernels to its frame (CDNA).

        A batched matrix product of the frame's shifted copies with the
        kernels. (A depthwise convolution whose filters are the per-clip
        kernels computes the same, but TFLite's int8 kernels get a filter
        that is not a constant wrong: measured 0.66 max error per pixel.)

        Args:
            frame: (B, H, W, C).
            kernels: (B, n, k*k), each row summing to 1.

        Returns:
            (B, H, W, C, n): the frame moved by each kernel.
        """
        k, n = self.dna_kernel, self.cdna_kernels
        size, channels = self.frame_size, self.channels
        r = k // 2
        shifts = self._shifted_copies(frame, r, r, self._shift_kernel)   # (B, C, H, W, k*k)
        shifts = ops.reshape(shifts, (-1, channels * size * size, k * k))
        out = ops.matmul(shifts, ops.transpose(kernels, (0, 2, 1)))      # (B, C*H*W, n)
        out = ops.reshape(out, (-1, channels, size, size, n))
        return ops.transpose(out, (0, 2, 3, 1, 4))

    # ------------------------------------------------------------- prediction

    def observe(self, context, noise=None):
        """Runs the context through the model.

        Args:
            context: (batch, time, H, W, C); time may be dynamic.
            noise: latent noise (time, batch, *noise_shape) or None.

        Returns:
            (the prediction of the frame after the context, states).
        """
        batch = ops.shape(context)[0]
        length = ops.shape(context)[1]
        states = self.initial_states(batch)
        first, states = self.step(context[:, 0], states,
                                  noise=None if noise is None else noise[0])

        def body(t, carry):
            _, s = carry
            return self.step(context[:, t], s, noise=None if noise is None else noise[t])

        return ops.fori_loop(1, length, body, (first, states))

    def rollout(self, context, horizon: int, num_samples=None, seed=None, floor: bool = True):
        """Predicts `horizon` frames after `context`, feeding predictions back.

        Args:
            context: (batch, time, H, W, C) float in [0, 1].
            horizon: number of frames to generate (a Python int).
            num_samples: draw this many futures per clip (a model with
                `latent_dim` > 0 gives different ones; a deterministic model
                repeats its one future).
            seed: an int makes the futures reproducible (the same seed, the
                same futures); None draws from the model's seed generator.
            floor: apply `output_floor` to the returned frames (False: the
                frames as the model feeds them back).

        Returns:
            (batch, horizon, H, W, C) float in [0, 1], or with `num_samples`
            (batch, num_samples, horizon, H, W, C).
        """
        horizon = int(horizon)
        if horizon <= 0:
            raise ValueError(f"horizon must be positive. Received: horizon={horizon}")
        samples = 1 if num_samples is None else int(num_samples)
        if samples <= 0:
            raise ValueError(f"num_samples must be positive. Received: {num_samples}")
        if samples > 1:
            context = ops.repeat(context, samples, axis=0)
        noise = None
        if self.latent_dim and seed is not None:
            steps = ops.shape(context)[1] + horizon
            noise = keras.random.normal((steps, ops.shape(context)[0]) + self.noise_shape,
                                        seed=int(seed))
        frame, states = self.observe(context, noise)
        frames = [frame]
        length = ops.shape(context)[1]
        for i in range(horizon - 1):
            frame, states = self.step(frame, states,
                                      noise=None if noise is None else noise[length + i])
            frames.append(frame)
        out = ops.stack(frames, axis=1)
        if floor:
            out = self.apply_floor(out)
        if num_samples is None:
            return out
        return ops.reshape(out, (-1, samples) + tuple(out.shape[1:]))

    def unrolled_rollout(self, context, horizon: int, noise=None):
        """`rollout` for a fixed context length, as a static Python loop over `step`.

        The graph holds every step (no while loop): what TFLite's int8 calibration
        and the FLOP profiler need, and it takes the latent noise explicitly.

        Args:
            context: (batch, time, H, W, C) with a static `time`.
            horizon: frames to predict.
            noise: (batch, time + horizon - 1, *noise_shape) standard normal draws,
                one per step (None: a deterministic model, or drawn per step).

        Returns:
            (batch, horizon, H, W, C).
        """
        length = context.shape[1]

        def draw(t):
            return None if noise is None else noise[:, t]

        states = self.initial_states(ops.shape(context)[0])
        for t in range(length):
            frame, states = self.step(context[:, t], states, noise=draw(t))
        frames = [frame]
        for i in range(horizon - 1):
            frame, states = self.step(frame, states, noise=draw(length + i))
            frames.append(frame)
        return self.apply_floor(ops.stack(frames, axis=1))

    def apply_floor(self, frames):
        """`frames` with every value below `output_floor` set to 0."""
        if not self.output_floor:
            return frames
        return ops.where(frames < self.output_floor, ops.zeros_like(frames), frames)

    def call(self, context, training=False):
        return self.rollout(context, self.horizon)

    # --------------------------------------------------------------- training

    def teacher_probability(self, iterations=None):
        """Probability of feeding the true frame after `iterations` optimizer steps.

        Args:
            iterations: optimizer steps taken (default: this model's optimizer's).
        """
        if iterations is None:
            iterations = None if self.optimizer is None else self.optimizer.iterations
        if self.sampling_steps == 0 or iterations is None:
            return ops.convert_to_tensor(0.0)
        step = ops.cast(iterations, "float32")
        return ops.maximum(0.0, 1.0 - step / float(self.sampling_steps))

    def unroll(self, context, target, teacher_prob):
        """Training-time unroll over context and target with scheduled sampling.

        With a latent variable, every step's z comes from the posterior given
        the true next frame.

        Returns:
            (predictions of context frames 2..T, predictions of the target
            frames, mean KL(q || p) per step (0 without a latent variable)).
        """
        batch = ops.shape(context)[0]
        states = self.initial_states(batch)
        truth = ops.concatenate([context, target], axis=1)
        context_len = context.shape[1]
        kl_total = ops.convert_to_tensor(0.0)
        context_preds = []
        for t in range(context_len):
            frame, states, kl = self._step(context[:, t], states, sharp=False,
                                           next_truth=self._truth(truth, t + 1))
            kl_total = kl_total + kl
            if t < context_len - 1:
                context_preds.append(frame)
        preds = [frame]
        for t in range(1, target.shape[1]):
            draw = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            use_truth = ops.cast(draw < teacher_prob, frame.dtype)
            inputs = use_truth * target[:, t - 1] + (1.0 - use_truth) * frame
            frame, states, kl = self._step(inputs, states, sharp=False,
                                           next_truth=self._truth(truth, context_len + t))
            kl_total = kl_total + kl
            preds.append(frame)
        context_preds = ops.stack(context_preds, axis=1) if context_preds else None
        steps = context_len + target.shape[1] - 1
        return context_preds, ops.stack(preds, axis=1), kl_total / float(steps)

    def _truth(self, truth, t):
        """The true frame t for the posterior (None for a deterministic model)."""
        return truth[:, t] if self.latent_dim else None

    def objective(self, loss_fn, context, target, context_preds, preds, kl=None):
        """Loss of an unroll: predicted targets, weighted context steps and the weighted KL.

        The KL term is reduced by hand, so it is divided by the number of
        replicas (keras Loss objects scale themselves) to keep the summed
        gradients under tf.distribute those of the global batch.
        """
        loss = loss_fn(target, preds)
        if context_preds is not None and self.context_loss_weight:
            loss = loss + self.context_loss_weight * loss_fn(context[:, 1:], context_preds)
        if self.latent_dim and kl is not None and self.kl_weight:
            loss = loss + self.kl_weight * kl / float(num_replicas())
        return loss

    def train_step(self, data):
        import tensorflow as tf

        context, target, _ = keras.utils.unpack_x_y_sample_weight(data)
        teacher_prob = self.teacher_probability()
        with tf.GradientTape() as tape:
            context_preds, preds, kl = self.unroll(context, target, teacher_prob)
            loss = self.objective(self.loss, context, target, context_preds, preds, kl)
            # A LossScaleOptimizer (mixed_float16) scales; other optimizers return loss.
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        # The loss objects scale by 1 / replicas; the tracker shows the global value.
        self.loss_tracker.update_state(loss * float(num_replicas()))
        self.teacher_tracker.update_state(teacher_prob)
        trackers = [self.loss_tracker, self.teacher_tracker]
        if self.latent_dim:
            self.kl_tracker.update_state(kl)
            trackers.append(self.kl_tracker)
        return {m.name: m.result() for m in trackers}

    def validation_losses(self, loss_fn, context, target):
        """(global loss, per-frame MSE) of a full autoregressive rollout over `target`.

        Honest validation: no true frame after the context is ever fed back.
        """
        preds = self.rollout(context, target.shape[1])
        loss = loss_fn(target, preds) * float(num_replicas())  # loss objects scale by 1/N
        return loss, ops.mean(ops.sum(ops.square(preds - target), axis=(2, 3, 4)))

    def test_step(self, data):
        context, target, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, frame_mse = self.validation_losses(self.loss, context, target)
        self.loss_tracker.update_state(loss)
        self.frame_mse_tracker.update_state(frame_mse)
        return {m.name: m.result() for m in (self.loss_tracker, self.frame_mse_tracker)}

    @property
    def metrics(self):
        return [self.loss_tracker, self.frame_mse_tracker, self.teacher_tracker, self.kl_tracker]

    def get_config(self):
        return {**super().get_config(), "frame_size": self.frame_size,
                "channels": self.channels, "horizon": self.horizon,
                "encoder_filters": list(self.encoder_filters),
                "core_filters": list(self.core_filters), "cell": self.cell,
                "kernel_size": self.kernel_size, "decoder_filters": list(self.decoder_filters),
                "head": self.head, "dna_kernel": self.dna_kernel,
                "cdna_kernels": self.cdna_kernels, "difference_input": self.difference_input,
                "sharp": self.sharp,
                "sampling_steps": self.sampling_steps,
                "context_loss_weight": self.context_loss_weight,
                "output_floor": self.output_floor,
                "latent_dim": self.latent_dim, "kl_weight": self.kl_weight, "seed": self.seed}
