"""Images (``.png .jpg .jpeg .tif .tiff``) and scanned PDF pages → text through Debian's Tesseract OCR.

Tesseract is called as a command (``tesseract stdin stdout``) with a timeout, so a stuck page cannot hang
an ingest and no Python binding or model download is needed: the engine and its language data install
with ``apt-get install tesseract-ocr`` (``tesseract-ocr-<lang>`` for other languages; pick them with
``DOMAINRAG_OCR_LANG``, e.g. ``deu+eng``). One block per image, or per page of a multi-page TIFF.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from domainrag.data.blocks import Block, ReadResult
from domainrag.data.readers.registry import register
from domainrag.errors import DatasetError

if TYPE_CHECKING:
    from PIL.Image import Image

OCR_INSTALL = "apt-get install tesseract-ocr (plus tesseract-ocr-<lang> for languages other than English)"
OCR_TIMEOUT_S = 180.0  # one page; a 300-dpi A4 scan takes seconds, so this only stops a stuck engine


def tesseract() -> str | None:
    """Path of the ``tesseract`` command, or None when no OCR engine is installed."""
    return shutil.which("tesseract")


def ocr_language() -> str:
    """Tesseract language(s) to recognise: ``DOMAINRAG_OCR_LANG`` (``+``-joined codes), default English."""
    return os.environ.get("DOMAINRAG_OCR_LANG", "").strip() or "eng"


def ocr_image(image: Image, where: str) -> str:
    """The text Tesseract reads in ``image`` (paragraphs separated by blank lines; may be empty).

    ``where`` names the file (and page) in the :class:`DatasetError` raised when no engine is installed,
    the engine fails, or it runs past :data:`OCR_TIMEOUT_S`.
    """
    exe = tesseract()
    if exe is None:
        raise DatasetError(where, "needs OCR and no OCR engine is installed", hint=OCR_INSTALL)
    if image.mode not in ("1", "L", "RGB"):
        image = image.convert("RGBA") if "A" in image.mode or image.mode == "P" else image.convert("RGB")
        if image.mode == "RGBA":  # transparent pixels become white paper, not black
            from PIL import Image as PILImage

            paper = PILImage.new("RGB", image.size, "white")
            paper.paste(image, mask=image.getchannel("A"))
            image = paper
    png = io.BytesIO()
    image.save(png, format="PNG")
    # One OCR thread per call: ingest parses files in several worker processes already.
    env = {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", "1")}
    lang = ocr_language()
    try:
        proc = subprocess.run(
            [exe, "stdin", "stdout", "-l", lang], input=png.getvalue(), capture_output=True,
            timeout=OCR_TIMEOUT_S, env=env, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DatasetError(where, f"OCR ran longer than {OCR_TIMEOUT_S:.0f} s and was stopped",
                           hint="check the image opens; very large scans can be downscaled to 300 dpi") from exc
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        detail = stderr.strip().splitlines()
        missing = [code for code in lang.split("+") if f"Failed loading language '{code}'" in stderr]
        hint = (f"install the language data: apt-get install tesseract-ocr-{missing[0]} (or set DOMAINRAG_OCR_LANG)"
                if missing else "run `tesseract FILE stdout` by hand to see what it needs")
        raise DatasetError(where, f"tesseract failed (exit {proc.returncode}): {detail[-1] if detail else ''}",
                           hint=hint)
    text = proc.stdout.decode("utf-8", "replace").replace("\x0c", "")
    paragraphs = ("\n".join(line.rstrip() for line in para.splitlines()).strip() for para in text.split("\n\n"))
    return "\n\n".join(p for p in paragraphs if p)


@register(".png", ".jpg", ".jpeg", ".tif", ".tiff")
def read(path: Path) -> ReadResult:
    """OCR an image file; a multi-page TIFF gives one block per page, with its page number."""
    if tesseract() is None:
        raise DatasetError(str(path), "an image is read by OCR and no OCR engine is installed", hint=OCR_INSTALL)
    from PIL import Image as PILImage
    from PIL import ImageSequence, UnidentifiedImageError

    result = ReadResult()
    try:
        with PILImage.open(path) as img:
            pages = getattr(img, "n_frames", 1)
            for number, frame in enumerate(ImageSequence.Iterator(img), start=1):
                where = f"{path} (page {number})" if pages > 1 else str(path)
                frame.load()
                text = ocr_image(frame.copy(), where)
                if text:
                    result.blocks.append(Block("text", text, page=number if pages > 1 else None))
                else:
                    result.warnings.append(f"page {number}: no text recognised" if pages > 1 else "no text recognised")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:  # Pillow raises these for damaged files
        raise DatasetError(str(path), f"not a readable image ({exc})",
                           hint="re-export or re-download it; check that it opens in an image viewer") from exc
    return result
