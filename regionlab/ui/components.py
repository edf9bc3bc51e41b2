"""Gradio components whose input reaches the validation layer untouched.

``gr.Image`` decodes uploads itself (PIL ``convert("RGB")``): a 16-bit PNG comes out white,
and a corrupt file fails inside gradio with a generic "Error" instead of a message.
:func:`raw_image` hands the uploaded file's path to :func:`regionlab.inputs.load_image`
(which handles 16-bit, CMYK, palette, alpha, EXIF rotation, animations and the pixel limit)
and turns the few failures gradio still meets first (it opens the header) into a specific
``gr.Error``.

A factory rather than a ``gr.Image`` subclass: gradio writes a ``.pyi`` stub next to the
module of every component class, which a read-only install could not do.
"""

from __future__ import annotations

import gradio as gr
from PIL import Image, UnidentifiedImageError

from ..inputs import DECODE_HELP, too_large_to_decode


def _invalid(message: str) -> gr.Error:
    return gr.Error(message, title="Invalid input", print_exception=False)


def raw_image(**kwargs) -> gr.Image:
    """A ``gr.Image`` (same frontend and API schema) whose handler receives the uploaded
    file's path, unconverted: pass it to :func:`regionlab.inputs.load_image`."""
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    preprocess = image.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Image.DecompressionBombError:
            raise _invalid(too_large_to_decode()) from None
        except UnidentifiedImageError:
            raise _invalid(f"cannot decode image: {DECODE_HELP}") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise _invalid(f"cannot decode image: {type(exc).__name__}") from None

    image.preprocess = checked
    return image
