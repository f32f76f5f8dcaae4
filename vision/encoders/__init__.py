"""Vision encoders (frame towers, and BT-Adapter's video encoder): each maps pixel_values [b, t, 3, H, W] to frame
tokens [b, t, n, d].

transformers is imported only when an encoder is built.
"""

from vision.encoders.bt_adapter_clip import BTAdapterVisionEncoder
from vision.encoders.clip import CLIPVisionEncoder
from vision.encoders.siglip import SiglipVisionEncoder

__all__ = ["BTAdapterVisionEncoder", "CLIPVisionEncoder", "SiglipVisionEncoder"]
