"""Built-in vocabularies (Pascal VOC 20, COCO 80, ShapesWorld 30) and custom class lists."""

from __future__ import annotations

from pathlib import Path

from ..config import LIMITS, Limits
from ..inputs import check_classes
from ..shapes.vocab import CLASSES as SHAPES_CLASSES

VOC = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa",
    "train", "tv monitor",
)
COCO = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
BUILTIN: dict[str, tuple[str, ...]] = {"voc": VOC, "coco": COCO, "shapes": SHAPES_CLASSES}
OTHERS = "others"  # the competitor of a single class (OVSeg's recipe)


def scored_class_list(classes: list[str], others: bool = True) -> list[str]:
    """The classes the softmax runs over: the user's, plus "others" when only one is given."""
    if len(classes) != 1 or not others:
        return list(classes)
    competitor = OTHERS if classes[0].casefold() != OTHERS else "other things"
    return [classes[0], competitor]


def vocabulary_warnings(clip, classes: list[str]) -> list[str]:
    """What ``clip`` cannot know of these class names: the words outside its vocabulary
    (the bundled ShapesWorld CLIP's word-level tokenizer; open_clip's BPE spells everything).
    Classes made only of unknown words share one text embedding, so their scores mean
    nothing; the warning names them."""
    fn = getattr(clip, "unknown_words", None)
    unknown = fn(classes) if fn is not None else []
    if not unknown:
        return []
    blind = blind_classes(clip, classes)
    shown = ", ".join(repr(w) for w in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
    msg = (f"{clip.name} does not know {len(unknown)} word(s) of these classes ({shown})")
    if blind:
        msg += (f"; {len(blind)} of {len(classes)} classes are made only of unknown words and "
                f"get one shared text embedding, so their scores mean nothing")
    return [msg + ". The bundled CLIP knows ShapesWorld's colours and shapes only: load real "
                  "CLIP weights for other classes (README 'Real weights')."]


def blind_classes(clip, classes: list[str], ignore: frozenset = frozenset()) -> list[str]:
    """The classes made only of words ``clip`` cannot represent (words in ``ignore`` aside):
    they all get the text embedding of the unknown token, so nothing the model sees can tell
    them apart. Models whose tokenizer spells every word (BPE) have none."""
    fn = getattr(clip, "unknown_words", None)
    if fn is None:
        return []
    split = getattr(getattr(clip, "tokenizer", None), "words", str.split)
    out = []
    for c in classes:
        words = set(split(c)) - ignore
        if words and words <= set(fn([c])):
            out.append(c)
    return out


def resolve_vocab(spec, limits: Limits = LIMITS) -> list[str]:
    """A vocabulary from a built-in name (``voc``, ``coco``, ``shapes``), a text file (one class
    per line, or comma-separated), a comma-separated string, or a list of names."""
    if isinstance(spec, (list, tuple)):
        return check_classes(list(spec), limits)
    if not isinstance(spec, str):
        return check_classes(spec, limits)
    key = spec.strip().lower()
    if key in BUILTIN:
        return list(BUILTIN[key])
    if "," not in spec and spec.strip().endswith((".txt", ".csv")):
        path = Path(spec.strip())
        if not path.is_file():
            from ..errors import InputError

            raise InputError(f"vocabulary file not found: {path}")
        text = path.read_text(encoding="utf-8")
        items = [c for line in text.splitlines() for c in line.split(",")]
        return check_classes(items, limits)
    return check_classes(spec, limits)
