"""Keyword tables of the ReCLIP parser (METHODS.md 3.2) and expression normalisation.

A new word is one table entry: relation keywords map to a predicate (``RELATIONS``), superlative
keywords to the predicate whose extreme they select (``SUPERLATIVES``); the other tables name
words that are places, null words, generic nouns, viewers, orientations and so on.
"""

from __future__ import annotations

import re

# ------------------------------------------------------------------------------ vocabulary

LEFT, RIGHT, ABOVE, BELOW = "left_of", "right_of", "above", "below"
BIGGER, SMALLER, WITHIN = "bigger", "smaller", "within"
CONTAINS, NEAR, FAR, BETWEEN, MIDDLE = "contains", "near", "far", "between", "middle"
TALLER, SHORTER = "taller", "shorter"

#: The reference's relation keywords (METHODS.md 3.2).
REFERENCE_RELATIONS: dict[str, frozenset[str]] = {
    LEFT: frozenset({"left", "west"}),
    RIGHT: frozenset({"right", "east"}),
    ABOVE: frozenset({"above", "north", "top", "back", "behind"}),
    BELOW: frozenset({"below", "south", "under", "front"}),
    BIGGER: frozenset({"bigger", "larger", "closer"}),
    SMALLER: frozenset({"smaller", "tinier", "further"}),
    WITHIN: frozenset({"inside", "within", "contained"}),
}
#: The reference's superlative keywords.
REFERENCE_SUPERLATIVES: dict[str, frozenset[str]] = {
    LEFT: frozenset({"left", "west", "leftmost", "western"}),
    RIGHT: frozenset({"right", "rightmost", "east", "eastern"}),
    ABOVE: frozenset({"above", "north", "top"}),
    BELOW: frozenset({"below", "south", "underneath", "front"}),
    BIGGER: frozenset({"bigger", "biggest", "larger", "largest", "closer", "closest"}),
    SMALLER: frozenset({"smaller", "smallest", "tinier", "tiniest", "further", "furthest"}),
}
#: Words the reference misses, added here.
EXTRA_RELATIONS: dict[str, frozenset[str]] = {
    LEFT: frozenset({"leftward", "leftwards"}),
    RIGHT: frozenset({"rightward", "rightwards"}),
    ABOVE: frozenset({"over", "atop", "higher", "upper", "upon"}),
    BELOW: frozenset({"beneath", "underneath", "lower", "bottom"}),
    BIGGER: frozenset({"nearer"}),
    SMALLER: frozenset({"farther", "tinier"}),
    CONTAINS: frozenset({"containing", "contains", "around", "surrounding", "enclosing"}),
    NEAR: frozenset({"next", "beside", "near", "nearby", "by", "close", "adjacent", "alongside",
                     "touching", "neighbouring", "neighboring"}),
    FAR: frozenset({"far", "away", "distant"}),
    TALLER: frozenset({"taller"}),
    SHORTER: frozenset({"shorter"}),
    BETWEEN: frozenset({"between", "amid", "amidst"}),
}
EXTRA_SUPERLATIVES: dict[str, frozenset[str]] = {
    LEFT: frozenset({"westernmost", "westmost"}),
    RIGHT: frozenset({"easternmost", "eastmost"}),
    ABOVE: frozenset({"topmost", "uppermost", "upper", "highest", "higher", "northern",
                      "northernmost", "back", "rear", "up"}),
    BELOW: frozenset({"bottom", "bottommost", "lowest", "lower", "lowermost", "southern",
                      "southernmost", "beneath", "down"}),
    BIGGER: frozenset({"nearest", "nearer"}),
    SMALLER: frozenset({"farthest", "farther"}),
    MIDDLE: frozenset({"middle", "center", "centre", "central", "centermost", "centremost",
                       "mid", "midmost", "centered", "centred"}),
    TALLER: frozenset({"tallest", "taller"}),
    SHORTER: frozenset({"shortest", "shorter"}),
}
# "frontmost" / "front most": nearest the viewer, read like the reference's "front" (lowest in
# the image); "backmost"/"rearmost" like its "back" (highest).
EXTRA_SUPERLATIVES[BELOW] = EXTRA_SUPERLATIVES[BELOW] | {"frontmost", "foremost"}
EXTRA_SUPERLATIVES[ABOVE] = EXTRA_SUPERLATIVES[ABOVE] | {"backmost", "rearmost", "hindmost"}


def _union(a: dict, b: dict) -> dict[str, frozenset[str]]:
    return {k: frozenset(a.get(k, frozenset()) | b.get(k, frozenset())) for k in {**a, **b}}


RELATIONS = _union(REFERENCE_RELATIONS, EXTRA_RELATIONS)
SUPERLATIVES = _union(REFERENCE_SUPERLATIVES, EXTRA_SUPERLATIVES)
SUPERLATIVE_NAMES = {LEFT: "leftmost", RIGHT: "rightmost", ABOVE: "topmost", BELOW: "bottommost",
                     TALLER: "tallest", SHORTER: "shortest",
                     BIGGER: "biggest", SMALLER: "smallest", MIDDLE: "middle"}
#: Distance words: with "to"/"from" and a second entity they are distance relations.
NEAR_TO = frozenset({"closest", "nearest", "closer", "nearer", "close", "next"})
FAR_FROM = frozenset({"farthest", "furthest", "farther", "further", "far", "away"})
#: Reference null words (never entities) plus ours (corner ... frame).
NULL_WORDS = frozenset({"part", "image", "side", "picture", "half", "region", "section",
                        "corner", "photo", "edge", "area", "frame", "view", "screen", "end",
                        "spot", "position", "place"})
#: Nouns that name a place, not a thing ("on the left", "at the top").
PLACE_NOUNS = frozenset({"left", "right", "top", "bottom", "middle", "center", "centre",
                         "front", "back", "rear", "west", "east", "north", "south", "mid",
                         "leftmost", "rightmost", "topmost", "bottommost"})
#: Nouns that carry no appearance: an entity made only of these is scored uniformly.
GENERIC_NOUNS = frozenset({"one", "ones", "thing", "things", "object", "objects", "item",
                           "items", "shape", "shapes"})
#: Nouns spaCy's small model often tags as verbs/adjectives (ShapesWorld's shapes among them).
LEXICON_NOUNS = frozenset({"circle", "circles", "square", "squares", "triangle", "triangles",
                           "star", "stars", "cross", "crosses", "one", "ones"})
#: Colour words: "<colour> <lexicon noun>" ("orange cross", "purple square") is merged into one
#: token before tagging; spaCy's small model otherwise reads "orange"/"purple" as the noun and
#: "cross"/"square" as a verb or adjective.
COLOUR_WORDS = frozenset({"red", "orange", "yellow", "green", "blue", "purple", "pink", "white",
                          "black", "brown", "grey", "gray", "violet", "cyan", "magenta", "gold",
                          "silver", "beige", "tan"})
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
            "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10}
NEGATIONS = frozenset({"not", "n't", "never", "no"})
#: The viewer is not a box: "closest to the camera" is a superlative (closest = biggest, the
#: reference's size proxy for distance), not a relation to a "camera" proposal.
VIEWER_WORDS = frozenset({"camera", "cameras", "viewer", "photographer", "lens", "us", "me",
                          "you", "observer"})
#: Verbs of orientation: "zebra facing left" describes the zebra (scored by IPS), not where it is.
ORIENTATION_VERBS = frozenset({"facing", "faces", "looking", "looks", "pointing",
                               "points", "turned", "turning", "heading", "headed", "walking",
                               "running", "moving", "going", "flying", "driving", "leaning",
                               "gazing", "staring", "glancing"})
#: Words that make a number of objects: "the two people on the left" returns two boxes.
COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5, "both": 2, "pair": 2, "couple": 2}
#: "the far left of the couch": an extreme inside the object, not beside it.
EXTREME_MODIFIERS = frozenset({"far", "very", "extreme"})
_MODIFIER_DEPS = frozenset({"amod", "compound", "nummod", "det", "quantmod", "nmod", "predet"})
_SUBJ_OBJ = frozenset({"nsubj", "nsubjpass", "dobj", "attr", "appos", "pobj", "npadvmod", "oprd"})
ALL_SPATIAL = frozenset().union(*RELATIONS.values(), *SUPERLATIVES.values(), NEAR_TO, FAR_FROM)


# ------------------------------------------------------------------------------ normalising

_MOST = re.compile(r"\b(left|right|top|bottom|upper|lower|east|west|north|south|center|centre|"
                   r"front|back|rear)"
                   r"[\s-]+most\b")
_HAND = re.compile(r"\b(left|right)[\s-]+hand(ed)?\b")
_NUM_ORD = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_NEAREST = re.compile(r"\b(nearest|closest)\s+(?=(the|a|an)\b)")  # "nearest the X" -> "... to"
_NUM_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth",
              7: "seventh", 8: "eighth", 9: "ninth", 10: "tenth"}


def normalise_expression(text: str) -> str:
    """Lower-case, join "left-most"/"left most", "left-hand" -> "left", "2nd" -> "second",
    "nearest the X" -> "nearest to the X",
    hyphens -> spaces, punctuation other than commas and apostrophes dropped."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = _MOST.sub(lambda m: m.group(1) + "most", t)
    t = _HAND.sub(lambda m: m.group(1), t)
    t = _NUM_ORD.sub(lambda m: _NUM_WORDS.get(int(m.group(1)), m.group(0)), t)
    t = _NEAREST.sub(lambda m: m.group(1) + " to ", t)
    t = re.sub(r"[-\u2010-\u2015_/]", " ", t)
    t = "".join(ch if (ch.isalnum() or ch in " ',") else " " for ch in t)
    t = re.sub(r"\s*,[\s,]*", ", ", t)
    t = " ".join(t.split()).strip(" ,'")
    return t

