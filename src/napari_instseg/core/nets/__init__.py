"""Networks shared by all methods."""

from .momentum import MomentumPair
from .unet import UNet, UNetConfig, build_unet

__all__ = ["MomentumPair", "UNet", "UNetConfig", "build_unet"]
