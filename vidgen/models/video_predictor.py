"""VideoPredictor: encoder -> convolutional recurrence -> decoder -> head, autoregressive."""

from __future__ import annotations

import inspect

import keras
from keras import ops

from vidgen.models.cdna_head import CDNAHead
from vidgen.models.checks import check_predictor_arguments
from vidgen.models.conv_gru_cell import ConvGRUCell
from vidgen.models.conv_lstm_cell import ConvLSTMCell
from vidgen.models.dna_head import DNAHead
from vidgen.models.flow_head import FlowHead
from vidgen.models.frame_decoder import FrameDecoder
from vidgen.models.frame_encoder import FrameEncoder
from vidgen.models.latent_prior import LatentPrior
from vidgen.models.pixel_head import PixelHead
from vidgen.models.predictor_training import PredictorTraining
from vidgen.models.sdna_head import SDNAHead

# The layer of each name in `vidgen.config.model` CELL_NAMES and HEAD_NAMES, the one list
# of the names (a test checks these keys are exactly those, in their order).
CELLS = {"lstm": ConvLSTMCell, "gru": ConvGRUCell}
HEADS = {"sdna": SDNAHead, "cdna": CDNAHead, "dna": DNAHead, "flow": FlowHead,
         "pixels": PixelHead}


@keras.saving.register_keras_serializable(package="vidgen")
class VideoPredictor(PredictorTraining, keras.Model):
    """Predicts the frames that follow a context clip, one at a time.

    Models p(v_t | v_<t): every frame goes through `FrameEncoder`, a stack of
    convolutional recurrent cells carries the past, `FrameDecoder` emits
    per-pixel maps and a head layer turns them into the next frame. The
    motion heads ("cdna", the default, "sdna", "dna", "flow") move the last
    frame's pixels and composite them with generated ones: most pixels of a
    next frame are pixels of the last one, moved, which a CNN predicts far
    more easily than the pixels themselves. "pixels" emits sigmoid pixels.

    Prediction is autoregressive: after the context, each predicted frame is
    fed back as the next input, so the prediction for frame t never sees
    frame t or later. Training (`train_step`) unrolls the same loop; with
    scheduled sampling the fed-back frame is the true frame with a
    probability that decays linearly to 0 over `sampling_steps` optimizer
    steps, so the model learns to consume its own outputs.

    Every constructor argument is an attribute of the same name, and
    `get_config` returns them all (read from this signature).

    Args:
        frame_size: height and width of the (square) frames; divisible by 4.
        channels: 1 or 3.
        horizon: frames predicted by `call`; `rollout` takes any horizon.
        encoder_filters: channels of the encoder's two stride-2 stages.
        core_filters: channels of each recurrent layer (one per layer).
        cell: "lstm" (ConvLSTM, `ConvLSTMCell`) or "gru" (ConvGRU, `ConvGRUCell`).
        kernel_size: kernel of the recurrent convolutions.
        decoder_filters: channels of the decoder's two upsampling stages.
        head: how the decoder's maps become the next frame: "cdna" (a few
            motion kernels per clip, `CDNAHead`), "sdna" (separable per-pixel
            kernels, `SDNAHead`), "dna" (one k x k kernel per pixel,
            `DNAHead`), "flow" (a dense flow field warps the last frame
            bilinearly; a gate and a residual correct it; the untrained model
            copies the last frame exactly, for natural video; `FlowHead`) or
            "pixels" (sigmoid pixels, `PixelHead`).
        dna_kernel: side k of the motion kernels of every motion head (not only
            "dna"), odd: the largest motion per frame is dna_kernel // 2 pixels;
            for "flow", the bound of the flow. Unused by "pixels".
        cdna_kernels: motion kernels per clip of the "cdna" head.
        difference_input: the encoder also sees the difference to the previous
            input frame, where motion is visible (zero at the first frame).
        sharp: `step` and `rollout` use the most likely kernel tap and mask
            component only (binary frames stay binary); training never does.
        sampling_steps: optimizer steps over which the teacher probability
            decays from 1 to 0; 0 trains on the model's own outputs only.
        context_loss_weight: weight of the next-frame loss on the context
            frames (predicting context frame t+1 from frames up to t).
        latent_dim: size of a per-step latent vector z_t, broadcast over the
            1/4-resolution features (0: deterministic). Training samples z_t from a
            posterior q(z_t | past, true next frame), inference from the
            learned prior p(z_t | past) (SVG-LP, `LatentPrior`), so `rollout`
            can draw several different futures.
        kl_weight: weight of KL(q || p) (summed over z's elements, per step).
        output_floor: pixels of the frames `rollout` and `call` return that
            are below this value become 0 (0: none). Only the returned frames:
            the model still feeds back its unfloored prediction, and `step`
            returns it. A model trained on a likelihood spreads a faint haze
            where it is unsure where an object goes; on black backgrounds the
            floor removes it (`vidgen train` can calibrate the value on the
            validation split: `train.output_floor_tolerance`).
        seed: seed of the scheduled-sampling and latent-noise draws.

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
        check_predictor_arguments(
            frame_size=frame_size, channels=channels, horizon=horizon, cell=cell, cells=CELLS,
            head=head, heads=tuple(HEADS), dna_kernel=dna_kernel,
            core_filters=core_filters, cdna_kernels=cdna_kernels, sampling_steps=sampling_steps,
            output_floor=output_floor, latent_dim=latent_dim, kl_weight=kl_weight)
        self.frame_size = frame_size
        self.channels = channels
        self.horizon = horizon
        self.encoder_filters = tuple(int(f) for f in encoder_filters)
        self.core_filters = tuple(int(f) for f in core_filters)
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
        self.latent_dim = latent_dim
        self.kl_weight = kl_weight
        self.output_floor = float(output_floor)
        self.seed = seed

        self.encoder = FrameEncoder(self.encoder_filters, name="encoder")
        self.cells = [CELLS[cell](f, kernel_size, name=f"core_{i}")
                      for i, f in enumerate(self.core_filters)]
        # Made in this order because the initialisers draw their seeds when a layer is
        # made (the order of the weights before the heads were layers).
        head_class = HEADS[head]
        maps = head_class.count_maps(channels, dna_kernel, cdna_kernels)
        self.decoder = FrameDecoder(self.decoder_filters, maps, name="decoder")
        # The head and the latent compute in float32 under a mixed-precision policy
        # (their own convolutions and dense layers follow the policy): the states,
        # the motion maps and every frame stay float32.
        self.latent_prior = (LatentPrior(latent_dim, dtype="float32", name="latent")
                             if latent_dim else None)
        head_kwargs = {"pixels": dict(channels=channels),
                       "cdna": dict(frame_size=frame_size, channels=channels,
                                    kernel_size=dna_kernel, num_kernels=cdna_kernels)}
        self.frame_head = head_class(**head_kwargs.get(head, dict(
            frame_size=frame_size, channels=channels, kernel_size=dna_kernel)),
            dtype="float32", name="head")
        self.seed_generator = keras.random.SeedGenerator(seed, name="sampling_seed")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.frame_mse_tracker = keras.metrics.Mean(name="frame_mse")
        self.teacher_tracker = keras.metrics.Mean(name="teacher_prob")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        # Build every weight now, so a fresh model can be saved, loaded or
        # restored from a backup before it has seen data.
        self.build((None, None, frame_size, frame_size, channels))

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
        features = (None, quarter, quarter, x_channels)
        if self.latent_prior is not None:
            self.latent_prior.build(features, None, (None, quarter, quarter, enc[1]))
            x_channels += self.latent_dim
        features = (None, quarter, quarter, x_channels)
        self.decoder.build(features, [(None, quarter, quarter, enc[1]),
                                      (None, size // 2, size // 2, enc[0])])
        frame = (None, size, size, self.channels)
        self.frame_head.build(frame, frame[:-1] + (self.frame_head.num_maps,), features)
        self.frame_head.initialize_maps(self.decoder.out)
        super().build(input_shape)

    # ------------------------------------------------------------------- step

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

    def _encode(self, frame, previous):
        """Encoder features and skips of `frame`, with its difference to `previous`."""
        x = frame
        if self.difference_input:
            # Motion is visible in the difference to the previous frame.
            x = ops.concatenate([frame, frame - previous], axis=-1)
        return self.encoder(x)

    def _step(self, frame, states, sharp=None, noise=None, next_truth=None):
        """`step`, plus the KL term of the latent variable (training passes `next_truth`)."""
        sharp = self.sharp if sharp is None else sharp
        features, skips = self._encode(frame, states[-1] if self.difference_input else None)
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
        if self.latent_prior is not None:
            truth = None if next_truth is None else self._encode(next_truth, frame)[0]
            if noise is None:
                noise = keras.random.normal((ops.shape(x)[0],) + self.noise_shape,
                                            seed=self.seed_generator)
            z, kl = self.latent_prior(x, noise, truth)
            x = ops.concatenate([x, z], axis=-1)
        # Bounded logits keep every probability within [3e-7, 1 - 3e-7]: saturated
        # sigmoids on mostly black frames would otherwise give vanishing gradients
        # and values in float32's subnormal range.
        maps = ops.clip(ops.cast(self.decoder(x, skips), "float32"), -15.0, 15.0)
        return self.frame_head(frame, maps, x, sharp=sharp), new_states, kl

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

    # ---------------------------------------------------------- serialisation

    @classmethod
    def hyper_parameters(cls) -> tuple[str, ...]:
        """Names of the constructor's hyper-parameters (its arguments but `**kwargs`)."""
        return tuple(name for name, p in inspect.signature(cls.__init__).parameters
                     .items() if name != "self" and p.kind is not p.VAR_KEYWORD)

    def get_config(self):
        config = {name: getattr(self, name) for name in self.hyper_parameters()}
        # Tuples as lists: the config is JSON.
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
        return {**super().get_config(), **config}
