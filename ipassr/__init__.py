"""ipassr: iPASSR stereo image super-resolution (Wang et al., CVPRW 2021).

>>> import ipassr
>>> model = ipassr.load_model("weights.pth.tar")          # or load_model(scale=4): shipped weights
>>> sr_left, sr_right = model.super_resolve(left, right)    # PIL images, arrays or tensors
"""

from .attention import AttentionMaps
from .checkpoint import load_network, save_weights
from .datasets import open_dataset
from .errors import CheckpointError, ImageReadError, IpassrError
from .inference import StereoSR, load_model
from .io import read_image, write_image
from .losses import LossConfig, ipassr_loss
from .metrics import psnr, score_pair, ssim
from .model import IPASSR, ModelConfig, count_parameters
from .patches import PatchFile
from .resize import imresize, imresize_tensor
from .tiling import plan_inference, stereo_forward
from .train_config import TrainConfig
from .training import Trainer
from .visualize import visualize_pair

__version__ = "0.1.0"

__all__ = [
    "AttentionMaps", "CheckpointError", "IPASSR", "ImageReadError", "IpassrError", "LossConfig",
    "ModelConfig", "PatchFile", "StereoSR", "TrainConfig", "Trainer", "count_parameters",
    "imresize", "imresize_tensor", "ipassr_loss", "load_model", "load_network", "open_dataset",
    "plan_inference", "psnr", "read_image", "save_weights", "score_pair", "ssim", "stereo_forward",
    "visualize_pair", "write_image", "__version__",
]
