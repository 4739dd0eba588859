"""Avatar images: decode with Pillow (the content decides, not the name), refuse bombs, re-encode.

Re-encoding from decoded pixels drops EXIF, ICC, text chunks and anything appended to the file
(polyglots), so what is served is always a plain image we produced ourselves.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from authgate.errors import UnsupportedMediaTypeError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_PIXELS = 4096 * 4096  # declared size checked before any pixel is decoded
MAX_SIDE = 512
OUTPUT_FORMAT, OUTPUT_EXTENSION, OUTPUT_MEDIA_TYPE = "WEBP", "webp", "image/webp"


def normalize_avatar(data: bytes) -> bytes:
    """Decode an uploaded PNG/JPEG/WebP and return it re-encoded as WebP, at most 512×512 (415 otherwise)."""
    with warnings.catch_warnings():
        # Pillow only warns between its limit and twice it; make every bomb an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as img:
                width, height = img.size
                if width < 1 or height < 1 or width * height > MAX_PIXELS:
                    raise UnsupportedMediaTypeError(f"Images may have at most {MAX_PIXELS} pixels")
                img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale
                img.seek(0)  # animated images: the first frame
                img.load()
                frame = ImageOps.exif_transpose(img) or img
                frame = frame.convert(
                    "RGBA" if "A" in frame.getbands() or "transparency" in frame.info else "RGB"
                )
        except UnsupportedMediaTypeError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UnsupportedMediaTypeError("The file is not an acceptable PNG, JPEG or WebP image") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt pixel data
            raise UnsupportedMediaTypeError("The image could not be decoded") from exc
    frame.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    frame.save(out, OUTPUT_FORMAT, quality=85)
    return out.getvalue()
