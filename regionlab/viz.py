"""Pure image helpers: colour palettes, mask and label-map overlays, heatmaps, legends.

Every function takes arrays (RGB uint8 HxWx3 images, boolean HxW masks, integer label maps)
and returns a new RGB uint8 array; nothing is drawn in place and no state is kept.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def palette(n: int, cmap: str | None = None) -> np.ndarray:
    """``n`` distinct RGB uint8 colours (n, 3) from a matplotlib colour map.

    Default: ``tab10`` up to 10 colours, ``tab20`` up to 20, else ``turbo`` sampled evenly
    (interleaved so that neighbouring indices get distant colours).
    """
    import matplotlib

    if n <= 0:
        return np.zeros((0, 3), np.uint8)
    name = cmap or ("tab10" if n <= 10 else "tab20" if n <= 20 else "turbo")
    cm = matplotlib.colormaps[name]
    if getattr(cm, "N", 256) <= 20 and n <= cm.N:  # qualitative map: take its entries in order
        rgb = np.array([cm(i)[:3] for i in range(n)])
    else:
        t = np.linspace(0.05, 0.95, n)
        order = np.argsort((np.arange(n) * 0.6180339887) % 1.0)  # golden-ratio interleave
        rgb = np.array([cm(float(v))[:3] for v in t[np.argsort(order)]])
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def hex_colour(rgb) -> str:
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _as_rgb(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


def mask_outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary band of a boolean mask: its pixels within ``width`` 4-neighbour steps of the
    outside (``width`` 1: inside pixels with a 4-neighbour outside)."""
    m = np.asarray(mask, bool)
    interior = m
    for _ in range(max(1, int(width))):
        pad = np.pad(interior, 1, constant_values=False)
        interior = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:] & interior
    return m & ~interior


def _outline_width(shape: tuple[int, ...]) -> int:
    return max(1, round(max(shape[:2]) / 250))


def colorize_label_map(label_map: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Label map (H, W) with 0 = unlabelled, k = class k -> RGB image (unlabelled black).

    ``colours`` is (K, 3) uint8, the colour of class k at row k - 1.
    """
    lut = np.concatenate([np.zeros((1, 3), np.uint8), np.asarray(colours, np.uint8)])
    lm = np.asarray(label_map)
    if lm.size and (lm.min() < 0 or lm.max() >= len(lut)):
        raise ValueError(f"label map values must lie in 0..{len(lut) - 1}")
    return lut[lm]


def label_map_overlay(image, label_map: np.ndarray, colours: np.ndarray, alpha: float = 0.25,
                      outline: bool = True) -> np.ndarray:
    """Blend class colours over the image where the label map is non-zero (0 stays as is),
    each class outlined in its colour. The tint is light by default so that objects keep
    their apparent colours (at 0.55 a red star under a green class colour looked olive); the
    outline carries the class colour."""
    img = _as_rgb(image)
    lm = np.asarray(label_map)
    if lm.shape != img.shape[:2]:
        raise ValueError(f"label map {lm.shape} does not match image {img.shape[:2]}")
    col = colorize_label_map(lm, colours).astype(np.float32)
    out = img.astype(np.float32)
    on = lm > 0
    out[on] = (1 - alpha) * out[on] + alpha * col[on]
    if outline:
        for k in np.unique(lm[on]):
            edge = mask_outline(lm == k, _outline_width(lm.shape))
            out[edge] = col[edge]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay_masks(image, masks, colours: np.ndarray | None = None, alpha: float = 0.25,
                  outline: bool = True) -> np.ndarray:
    """Blend each boolean mask (P, H, W) in its colour over the image, later masks on top,
    outlined in that colour (a light tint by default: objects keep their colours)."""
    img = _as_rgb(image)
    ms = np.asarray(masks, bool)
    if ms.ndim == 2:
        ms = ms[None]
    cols = palette(len(ms)) if colours is None else np.asarray(colours, np.uint8)
    out = img.astype(np.float32)
    for m, c in zip(ms, cols):
        out[m] = (1 - alpha) * out[m] + alpha * c.astype(np.float32)
        if outline:
            out[mask_outline(m, _outline_width(m.shape))] = c
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def region_view(image, mask: np.ndarray, colour=(255, 215, 0), size: int | None = None,
                margin: float = 0.15, dim: float = 0.6) -> np.ndarray:
    """What a region is, alone: the image cropped to the mask's box (grown by ``margin`` of
    its side on each edge, at least 2 px, kept inside the image), pixels outside the mask
    darkened by ``dim`` (0: as is, 1: black), the mask outlined in ``colour``. ``size``: the
    longer side of the result in pixels (the crop is resized, smoothly when enlarged; the
    outline is drawn at that size so that it stays thin); None keeps the crop's size."""
    img = _as_rgb(image)
    m = np.asarray(mask, bool)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match image {img.shape[:2]}")
    ys, xs = np.nonzero(m)
    if not len(xs):
        raise ValueError("the mask is empty")
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    pad = max(2, round(margin * max(x1 - x0, y1 - y0)))
    h, w = m.shape
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    crop, cm = img[y0:y1, x0:x1], m[y0:y1, x0:x1]
    if size is not None and max(crop.shape[:2]) != int(size):
        s = int(size) / max(crop.shape[:2])
        wh = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
        smooth = Image.Resampling.LANCZOS if s > 1 else Image.Resampling.BOX
        crop = np.asarray(Image.fromarray(crop).resize(wh, smooth))
        cm = np.asarray(Image.fromarray(cm).resize(wh, Image.Resampling.NEAREST))
    out = crop.astype(np.float32)
    out[~cm] *= 1.0 - float(np.clip(dim, 0.0, 1.0))
    out[mask_outline(cm, _outline_width(cm.shape))] = np.asarray(colour, np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def heatmap_overlay(image, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet",
                    normalise: bool = True) -> np.ndarray:
    """A heatmap (any H', W'; resized bilinearly to the image) blended over the image."""
    import matplotlib

    img = _as_rgb(image)
    h = np.asarray(heat, np.float32)
    if h.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {h.shape}")
    if h.shape != img.shape[:2]:
        h = np.asarray(Image.fromarray(h).resize(
            (img.shape[1], img.shape[0]), Image.Resampling.BILINEAR))
    if normalise:
        lo, hi = float(h.min()), float(h.max())
        h = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    col = matplotlib.colormaps[cmap](np.clip(h, 0, 1))[..., :3] * 255
    out = (1 - alpha) * img.astype(np.float32) + alpha * col
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _font(size: int):
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # no matplotlib font: PIL's built-in one
        return ImageFont.load_default()


def legend(names: list[str], colours: np.ndarray, font_size: int = 14, width: int | None = None,
           max_rows: int = 40) -> np.ndarray:
    """A legend image: one row per name with its colour swatch (white background).

    Beyond ``max_rows`` names, the rest are summarised in one "... and N more" row.
    """
    font = _font(font_size)
    shown = list(names)[:max_rows]
    extra = len(names) - len(shown)
    rows = shown + ([f"... and {extra} more"] if extra > 0 else [])
    pad, sw = 6, font_size
    line = font_size + 8
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((probe.textlength(r, font=font) for r in rows), default=0)
    w = width or int(pad * 3 + sw + text_w + 2)
    h = pad * 2 + line * max(1, len(rows))
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(rows):
        y = pad + i * line
        if i < len(shown):
            c = tuple(int(v) for v in colours[i])
            draw.rectangle([pad, y + 3, pad + sw, y + 3 + sw], fill=c, outline=(0, 0, 0))
        draw.text((pad * 2 + sw, y + 2), name, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def with_legend(image, names: list[str], colours: np.ndarray, font_size: int | None = None):
    """The image with a legend panel appended on its right (same height or taller)."""
    img = _as_rgb(image)
    fs = font_size or int(np.clip(img.shape[0] / 24, 10, 18))
    leg = legend(names, colours, font_size=fs)
    h = max(img.shape[0], leg.shape[0])
    out = np.full((h, img.shape[1] + leg.shape[1], 3), 255, np.uint8)
    out[: img.shape[0], : img.shape[1]] = img
    out[: leg.shape[0], img.shape[1]:] = leg
    return out


def index_image(label_map: np.ndarray, colours: np.ndarray | None = None) -> Image.Image:
    """A label map as a PNG-ready index image that keeps the values: palette mode "P" (with
    the class colours, index 0 black) when values fit in 0..255, else 16-bit greyscale."""
    lm = np.asarray(label_map)
    if lm.size and lm.min() < 0:
        raise ValueError("label map values must be >= 0")
    top = int(lm.max()) if lm.size else 0
    if top <= 255:
        img = Image.fromarray(lm.astype(np.uint8))  # "L"; putpalette makes it "P"
        pal = np.zeros((256, 3), np.uint8)
        if colours is not None:
            cols = np.asarray(colours, np.uint8)[:255]
            pal[1 : 1 + len(cols)] = cols
        img.putpalette(pal.reshape(-1).tolist())
        return img
    if top > 65535:
        raise ValueError(f"label map value {top} does not fit in a 16-bit PNG")
    return Image.fromarray(lm.astype(np.uint16))


def _render(fig) -> np.ndarray:
    """A matplotlib figure as an RGB uint8 array (Agg, no display, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


@lru_cache(maxsize=16)
def _colourbar(width: int, cmap: str, label: str, lo: float, hi: float,
               ends: tuple[str, str]) -> np.ndarray:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    dpi = 100
    fs = float(np.clip(width / 45, 7, 10))
    height = int(round(fs * 6.2))
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    side = (fs * 3.2) / width  # room for the end words left and right
    cax = fig.add_axes((side, 0.62, 1 - 2 * side, 0.3))
    cb = fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap), cax=cax, orientation="horizontal")
    cb.ax.tick_params(labelsize=fs * 0.9, length=2, pad=1)
    cb.set_ticks(np.linspace(lo, hi, 5 if width >= 200 else 3))
    cb.ax.xaxis.set_major_formatter("{x:g}")
    if label:
        cb.set_label(label, fontsize=fs, labelpad=1)
    if ends[0]:
        fig.text(side / 2, 0.77, ends[0], ha="center", va="center", fontsize=fs * 0.9)
    if ends[1]:
        fig.text(1 - side / 2, 0.77, ends[1], ha="center", va="center", fontsize=fs * 0.9)
    out = _render(fig)
    out.setflags(write=False)
    return out


def colourbar(width: int, cmap: str = "jet", label: str = "relevance", lo: float = 0.0,
              hi: float = 1.0, ends: tuple[str, str] = ("low", "high")) -> np.ndarray:
    """A horizontal colour scale (RGB uint8, ``width`` px wide, white background) drawn by
    matplotlib: the colour map from ``lo`` (left) to ``hi`` (right) with ticks, ``label``
    under it and the words ``ends`` (low, high) at its ends."""
    width = int(width)
    if width < 64:
        raise ValueError(f"a colour bar needs at least 64 px of width, got {width}")
    return _colourbar(width, cmap, label, float(lo), float(hi), tuple(ends)).copy()


def with_colourbar(image, cmap: str = "jet", label: str = "relevance", lo: float = 0.0,
                   hi: float = 1.0, ends: tuple[str, str] = ("low", "high")) -> np.ndarray:
    """A heatmap image with its colour scale (:func:`colourbar`) appended below it (below, not
    beside: image viewers put their buttons in the top corners)."""
    img = _as_rgb(image)
    bar = colourbar(max(img.shape[1], 64), cmap, label, lo, hi, ends)
    out = np.full((img.shape[0] + bar.shape[0], bar.shape[1], 3), 255, np.uint8)
    out[: img.shape[0], : img.shape[1]] = img
    out[img.shape[0]:] = bar
    return out


def line_chart(values, xlabel: str = "iteration", ylabel: str = "loss", width: int = 520,
               height: int = 260, x0: int = 1, colour: str = "#4f46e5") -> np.ndarray:
    """A line chart of ``values`` at x = ``x0``, ``x0`` + 1, ... (RGB uint8, ``width`` x
    ``height``): integer x ticks only, at most about one per 60 px (MaxNLocator), so tick
    labels never overlap however many points there are."""
    return _render(_line_figure(values, xlabel, ylabel, width, height, x0, colour))


def _line_figure(values, xlabel, ylabel, width, height, x0, colour):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    y = np.asarray(values, np.float64).reshape(-1)
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    ax = fig.add_subplot()
    x = np.arange(x0, x0 + len(y))
    if len(y):
        ax.plot(x, y, color=colour, lw=1.8, marker="o" if len(y) <= 30 else None, ms=3)
        ax.set_xlim(x[0] - 0.5, x[-1] + 0.5) if len(y) > 1 else None
    ax.xaxis.set_major_locator(MaxNLocator(nbins=max(2, width // 60), integer=True,
                                           min_n_ticks=1))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=max(2, height // 45)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout(pad=0.4)
    return fig
