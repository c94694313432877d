"""Images inside self-contained HTML pages: thumbnails encoded as ``data:`` URIs.

The evaluation report and the prediction worklist are single files that open offline and
can be mailed or archived whole, so their images travel inside them, never as links.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

#: Longest side of a thumbnail in a report or worklist, pixels.
THUMBNAIL_SIDE = 160


def thumbnail_jpeg(pixels: np.ndarray, side: int = THUMBNAIL_SIDE, quality: int = 80) -> bytes:
    """JPEG bytes of ``pixels`` (``(H, W)`` or ``(H, W, 3)`` uint8) shrunk so the longer side
    is at most ``side``, at its aspect ratio. JPEG: a radiograph thumbnail is a few kB."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("L" if image.mode == "L" else "RGB").save(buffer, format="JPEG",
                                                            quality=quality)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    """``data:MIME;base64,...`` for ``src`` attributes of a self-contained page."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def jpeg_uri(data: bytes) -> str:
    return data_uri(data, "image/jpeg")


def png_uri(data: bytes) -> str:
    return data_uri(data, "image/png")
