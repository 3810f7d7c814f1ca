"""Small real media made on the fly (nothing binary is committed)."""

import io
import math
import struct
import wave

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw


def png_bytes(size: int = 640) -> bytes:
    image = Image.new("RGB", (size, size), (230, 200, 170))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 4, size // 5, 3 * size // 4, 4 * size // 5), fill=(200, 160, 130))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def wav_bytes(seconds: float = 5.0, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        frames = (
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * i / rate)))
            for i in range(int(seconds * rate))
        )
        wav.writeframes(b"".join(frames))
    return out.getvalue()


def png_upload(name: str = "face.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(), content_type="image/png")


def wav_upload(name: str = "voice.wav", seconds: float = 5.0) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, wav_bytes(seconds), content_type="audio/wav")
