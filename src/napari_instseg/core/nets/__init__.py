"""Networks shared by all methods."""

from .unet import UNet, UNetConfig, build_unet

__all__ = ["UNet", "UNetConfig", "build_unet"]
