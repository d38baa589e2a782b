"""vidgen's Keras models and layers, all registered serializable under package "vidgen"."""

from vidgen.models.conv_gru_cell import ConvGRUCell
from vidgen.models.conv_lstm_cell import ConvLSTMCell
from vidgen.models.frame_decoder import FrameDecoder
from vidgen.models.frame_discriminator import FrameDiscriminator
from vidgen.models.frame_encoder import FrameEncoder
from vidgen.models.video_discriminator import VideoDiscriminator
from vidgen.models.video_gan import VideoGAN
from vidgen.models.video_predictor import VideoPredictor

__all__ = ["ConvGRUCell", "ConvLSTMCell", "FrameDecoder", "FrameDiscriminator", "FrameEncoder",
           "VideoDiscriminator", "VideoGAN", "VideoPredictor"]
