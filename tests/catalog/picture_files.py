"""Real picture files for the tests, drawn with Pillow: a phone photo with GPS in its EXIF, a
transparent PNG, a bomb (few bytes, many pixels)."""
from __future__ import annotations

import io

from PIL import ExifTags, Image, ImageDraw

CAMERA = "SpyCam 3000"


def photo_with_gps(size: tuple[int, int] = (1600, 1200), *, colour=(200, 40, 40), rotated: bool = True) -> bytes:
    """A JPEG as a phone writes it: camera make, GPS position, and (`rotated`) an orientation tag
    saying the pixels must be turned 90° to stand upright."""
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 4, size[1] // 4), fill=(255, 255, 255))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = CAMERA
    if rotated:
        exif[ExifTags.Base.Orientation] = 6
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (31.0, 14.0, 24.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (121.0, 28.0, 12.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def png(size: tuple[int, int] = (640, 480), *, colour=(30, 90, 200, 255), mode: str = "RGBA") -> bytes:
    image = Image.new(mode, size, colour)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def bomb(size: tuple[int, int] = (6000, 4000)) -> bytes:
    """24 million pixels in a few kilobytes: a one-bit PNG of one colour."""
    out = io.BytesIO()
    Image.new("1", size, 0).save(out, "PNG", optimize=True)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
