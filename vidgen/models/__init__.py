"""vidgen's Keras models and layers, all registered serializable under package "vidgen"."""

from vidgen.models.cdna_head import CDNAHead
from vidgen.models.conv_gru_cell import ConvGRUCell
from vidgen.models.conv_lstm_cell import ConvLSTMCell
from vidgen.models.dna_head import DNAHead
from vidgen.models.flow_head import FlowHead
from vidgen.models.frame_decoder import FrameDecoder
from vidgen.models.frame_discriminator import FrameDiscriminator
from vidgen.models.frame_encoder import FrameEncoder
from vidgen.models.latent_prior import LatentPrior
from vidgen.models.pixel_head import PixelHead
from vidgen.models.sdna_head import SDNAHead
from vidgen.models.spectral_norm_conv import SpectralNormConv
from vidgen.models.video_discriminator import VideoDiscriminator
from vidgen.models.video_gan import VideoGAN
from vidgen.models.video_predictor import VideoPredictor

__all__ = ["CDNAHead", "ConvGRUCell", "ConvLSTMCell", "DNAHead", "FlowHead", "FrameDecoder",
           "FrameDiscriminator", "FrameEncoder", "LatentPrior", "PixelHead", "SDNAHead",
           "SpectralNormConv", "VideoDiscriminator", "VideoGAN", "VideoPredictor"]
