"""Prepare the region masks of the app's photo examples (scikit-image's sample photos).

GrabCut (OpenCV) from a hand-placed box per object, refined by hand-placed "surely inside" /
"surely outside" rectangles; the largest connected component is kept. Run once; the PNGs in
``assets/examples/`` are the result (``python scripts/prepare_example_masks.py``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "assets" / "examples"

# photo -> region name -> (box x0, y0, x1, y1, [inside rects], [outside rects])
REGIONS: dict[str, dict[str, tuple]] = {
    "astronaut": {
        "astronaut": ((0, 10, 430, 512), [(150, 40, 260, 180), (60, 300, 240, 500)],
                      [(270, 340, 512, 512), (40, 15, 135, 95)]),
        "helmet": ((275, 335, 512, 512), [(330, 380, 470, 500)], []),
        "flag": ((0, 0, 100, 470), [(5, 40, 60, 300)], [(90, 200, 200, 512)]),
        "space shuttle": ((345, 0, 470, 285), [(380, 60, 440, 230)], []),
    },
    "coffee": {
        "cup": ((170, 12, 425, 300), [(220, 60, 380, 240)], []),
        "saucer": ((70, 60, 485, 395), [(100, 320, 300, 370)], [(220, 60, 380, 240)]),
        "spoon": ((310, 60, 425, 335), [(330, 230, 390, 300)], []),
    },
    "chelsea": {
        "cat": ((10, 0, 440, 300), [(100, 60, 380, 280)], [(440, 0, 451, 300)]),
    },
}


def grabcut(image: np.ndarray, box, inside, outside, iterations: int = 8) -> np.ndarray:
    h, w = image.shape[:2]
    mask = np.full((h, w), cv2.GC_BGD, np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = cv2.GC_PR_FGD
    for a, b, c, d in inside:
        mask[b:d, a:c] = cv2.GC_FGD
    for a, b, c, d in outside:
        mask[b:d, a:c] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, iterations,
                cv2.GC_INIT_WITH_MASK)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n > 1:
        fg = (lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return fg.astype(bool)


def main() -> None:
    from skimage import data

    OUT.mkdir(parents=True, exist_ok=True)
    for photo, regions in REGIONS.items():
        image = getattr(data, photo)()
        for name, (box, inside, outside) in regions.items():
            m = grabcut(image, box, inside, outside)
            path = OUT / f"{photo}__{name.replace(' ', '_')}.png"
            Image.fromarray(m.astype(np.uint8) * 255).save(path, optimize=True)
            print(f"{path.name}: {m.mean():.1%} of the image")


if __name__ == "__main__":
    main()
