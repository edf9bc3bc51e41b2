"""ReCLIP's relation and superlative parser (METHODS.md 3.2), with the gaps of the reference filled.

An expression is parsed with spaCy into an *entity tree*: the head entity (the noun phrase the
expression is about), and for every entity its relations to other entities ("left of the blue
square") and its superlatives ("the leftmost", "on the left"). The tree is combined with
per-entity Isolated Proposal Scoring distributions by :func:`execute_tree`:

- entity: ``p = IPS(entity text)``; then ``p <- normalise(p * r)`` per relation, with
  ``r[i] = sum_j S[i, j] q[j]`` and ``q`` the (recursive) distribution of the related entity;
- superlative: ``p[i] <- normalise(p[i] * sum_j p[j] S[i, j])``;
- the caller multiplies ``IPS(full expression)`` by the head's ``p``; the tree is used only when a
  relation or superlative keyword occurred (:attr:`ParseTree.uses_spatial`).

Predicates over boxes (pairwise ``S[i, j]``, diagonal 0): ``left_of = 1[cx_i < cx_j]``,
``above = 1[cy_i < cy_j]``, ``bigger = 1[area_i > area_j]``, ``within = area(i & j) / area(i)``
(reference), and ours: ``contains`` (within, transposed), ``near`` (the nearest neighbour of j
gets 1, others ``exp(-(d_ij - d_min_j) / (0.1 * diagonal))``), ``far`` (``d_ij / max_i d_ij``),
``middle`` (closer to the candidates' p-weighted centroid) and the ternary ``between``.

Beyond the reference (each with a test): farthest/nearest, bottom/lower/upper/highest/lowest,
topmost/bottommost, middle/center, next to/beside/near, k-th from a side (``rank``),
negation ("not left of"), possessives ("the man's hat") and "man with a hat on the left" (the
reference crashes there; we lift the superlative to the man), "between A and B" / "between the
two squares" (the reference computes and then discards it), a relation with no noun before it
("left of the star": an implicit, uniform head) and odd casing/punctuation. Named differences:
the diagonal of ``within`` is 0 (an object does not support itself); "closest/nearest to X" and
"farthest from X" are distance relations to X (the reference maps "closer" to ``bigger`` even
with a "to"); without a "to"/"from" they keep the reference's meaning (``bigger`` / ``smaller``,
a camera-distance proxy); spatial keywords are removed from an entity's IPS text.
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field

import numpy as np

# ------------------------------------------------------------------------------ vocabulary

LEFT, RIGHT, ABOVE, BELOW = "left_of", "right_of", "above", "below"
BIGGER, SMALLER, WITHIN = "bigger", "smaller", "within"
CONTAINS, NEAR, FAR, BETWEEN, MIDDLE = "contains", "near", "far", "between", "middle"

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
}


def _union(a: dict, b: dict) -> dict[str, frozenset[str]]:
    return {k: frozenset(a.get(k, frozenset()) | b.get(k, frozenset())) for k in {**a, **b}}


RELATIONS = _union(REFERENCE_RELATIONS, EXTRA_RELATIONS)
SUPERLATIVES = _union(REFERENCE_SUPERLATIVES, EXTRA_SUPERLATIVES)
SUPERLATIVE_NAMES = {LEFT: "leftmost", RIGHT: "rightmost", ABOVE: "topmost", BELOW: "bottommost",
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
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
            "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10}
NEGATIONS = frozenset({"not", "n't", "never", "no"})
_MODIFIER_DEPS = frozenset({"amod", "compound", "nummod", "det", "quantmod", "nmod", "predet"})
_SUBJ_OBJ = frozenset({"nsubj", "nsubjpass", "dobj", "attr", "appos", "pobj", "npadvmod", "oprd"})
ALL_SPATIAL = frozenset().union(*RELATIONS.values(), *SUPERLATIVES.values(), NEAR_TO, FAR_FROM)


# ------------------------------------------------------------------------------ the tree


@dataclass
class Superlative:
    """``rank`` k > 1 means "k-th from that side" (second from the left)."""

    predicate: str
    keyword: str
    rank: int = 1
    rule: str = ""

    @property
    def name(self) -> str:
        base = SUPERLATIVE_NAMES.get(self.predicate, self.predicate)
        return base if self.rank == 1 else f"{base} #{self.rank}"

    def to_dict(self) -> dict:
        return {**asdict(self), "name": self.name}


@dataclass
class Relation:
    """A link from an entity to ``targets`` (entity ids; two for "between A and B").

    ``predicate`` is None when the path holds no spatial keyword ("with", possessive): the link
    is shown but not scored."""

    predicate: str | None
    targets: list[int]
    keyword: str | None = None
    path: list[str] = field(default_factory=list)
    negated: bool = False
    rule: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EntityNode:
    """A noun phrase. ``text`` is what IPS scores ("" for a generic or implicit entity, scored
    uniformly); ``span`` the words as written; ``rule`` why this node exists."""

    id: int
    text: str
    span: str
    head: str
    rule: str
    generic: bool = False
    plural: bool = False
    relations: list[Relation] = field(default_factory=list)
    superlatives: list[Superlative] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list, repr=False)
    head_index: int = -1

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("token_ids")
        d.pop("head_index")
        d["relations"] = [r.to_dict() for r in self.relations]
        d["superlatives"] = [s.to_dict() for s in self.superlatives]
        return d


@dataclass
class ParseTree:
    """The parse of one expression. ``entities[0]`` is the head entity."""

    expression: str
    normalised: str
    entities: list[EntityNode]
    tokens: list[dict]
    notes: list[str]
    pipeline: str

    @property
    def head(self) -> EntityNode:
        return self.entities[0]

    @property
    def relations(self) -> list[tuple[int, Relation]]:
        return [(e.id, r) for e in self.entities for r in e.relations]

    @property
    def superlatives(self) -> list[tuple[int, Superlative]]:
        return [(e.id, s) for e in self.entities for s in e.superlatives]

    @property
    def uses_spatial(self) -> bool:
        """True iff a relation or superlative keyword occurred (then the tree is used)."""
        return any(r.predicate for _, r in self.relations) or bool(self.superlatives)

    def to_dict(self) -> dict:
        return {
            "expression": self.expression,
            "normalised": self.normalised,
            "uses_spatial": self.uses_spatial,
            "head": 0,
            "entities": [e.to_dict() for e in self.entities],
            "relations": [{"source": s, **r.to_dict()} for s, r in self.relations],
            "superlatives": [{"entity": s, **x.to_dict()} for s, x in self.superlatives],
            "tokens": self.tokens,
            "notes": self.notes,
            "pipeline": self.pipeline,
        }

    def describe(self) -> str:
        """A readable, indented rendering of the tree (for the UI and the CLI)."""
        lines: list[str] = []

        def show(eid: int, indent: str, seen: set) -> None:
            e = self.entities[eid]
            seen.add(eid)
            label = repr(e.text) if e.text else "(any object)"
            lines.append(f"{indent}[{e.id}] {label}  <- {e.rule}")
            for s in e.superlatives:
                lines.append(f"{indent}    superlative {s.name} ({s.keyword!r}: {s.rule})")
            for n in e.notes:
                lines.append(f"{indent}    note: {n}")
            for r in e.relations:
                pred = r.predicate or "(not spatial)"
                neg = "NOT " if r.negated else ""
                tgt = ", ".join(f"[{t}]" for t in r.targets)
                lines.append(f"{indent}    {neg}{pred} -> {tgt}  ({r.rule})")
                for t in r.targets:
                    if t not in seen:
                        show(t, indent + "        ", seen)

        show(0, "", set())
        lines += [f"note: {n}" for n in self.notes]
        lines.append("tree used: yes" if self.uses_spatial else
                     "tree used: no (no spatial keyword; IPS alone)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ normalising

_MOST = re.compile(r"\b(left|right|top|bottom|upper|lower|east|west|north|south|center|centre)"
                   r"[\s-]+most\b")
_HAND = re.compile(r"\b(left|right)[\s-]+hand(ed)?\b")
_NUM_ORD = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_NUM_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth",
              7: "seventh", 8: "eighth", 9: "ninth", 10: "tenth"}


def normalise_expression(text: str) -> str:
    """Lower-case, join "left-most"/"left most", "left-hand" -> "left", "2nd" -> "second",
    hyphens -> spaces, punctuation other than commas and apostrophes dropped."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = _MOST.sub(lambda m: m.group(1) + "most", t)
    t = _HAND.sub(lambda m: m.group(1), t)
    t = _NUM_ORD.sub(lambda m: _NUM_WORDS.get(int(m.group(1)), m.group(0)), t)
    t = re.sub(r"[-\u2010-\u2015_/]", " ", t)
    t = "".join(ch if (ch.isalnum() or ch in " ',") else " " for ch in t)
    t = re.sub(r"\s*,[\s,]*", ", ", t)
    t = " ".join(t.split()).strip(" ,'")
    return t


# ------------------------------------------------------------------------------ parsing


def _word(tok) -> str:
    return tok.lower_


def _is_entity_head(tok) -> bool:
    w, lemma = _word(tok), tok.lemma_.lower()
    if w in PLACE_NOUNS or w in NULL_WORDS or lemma in NULL_WORDS or w in ALL_SPATIAL:
        return False
    if w in ORDINALS or w in NEGATIONS:
        return False
    nouny = tok.pos_ in ("NOUN", "PROPN") or w in LEXICON_NOUNS or lemma in LEXICON_NOUNS
    if not nouny:
        return False
    # a modifier of a following noun ("green" in "the green cross", "square" in "square table")
    head = tok.head
    if head is not tok and head.i > tok.i and tok.dep_ in _MODIFIER_DEPS and (
        head.pos_ in ("NOUN", "PROPN") or _word(head) in LEXICON_NOUNS
    ):
        return False
    return True


def _span_tokens(tok, heads: set[int]) -> list:
    """The head and its left modifiers (possessors excluded: they are entities of their own)."""
    out = [tok]
    for child in tok.lefts:
        if child.i in heads or child.dep_ in ("punct", "cc", "conj", "relcl", "mark"):
            continue
        out.extend(t for t in child.subtree if t.i < tok.i and not _under_head(t, child, heads))
    return sorted(out, key=lambda t: t.i)


def _under_head(t, top, heads: set[int]) -> bool:
    """Is ``t`` an entity head, or inside one, below ``top``?"""
    while True:
        if t.i in heads:
            return True
        if t == top or t.head is t:
            return False
        t = t.head


def _relation_from_path(words: list[str]) -> tuple[str | None, str | None, int]:
    """The relation of a path of words (the keyword nearest the target wins).

    Returns (predicate, keyword, index of that keyword in ``words``)."""
    best: tuple[str | None, str | None, int] = (None, None, -1)
    for k, w in enumerate(words):
        nxt = words[k + 1] if k + 1 < len(words) else ""
        pred = None
        if w in NEAR_TO and nxt == "to":
            pred = NEAR
        elif w in FAR_FROM and nxt == "from":
            pred = FAR
        elif w == "next" or w == "far":  # "the next circle", "far left": not relations alone
            pred = None
        else:
            for p, words_ in RELATIONS.items():
                if w in words_:
                    pred = p
                    break
        if pred is not None:
            best = (pred, w, k)
    return best


def _is_partitive(words: list[str]) -> bool:
    """"the smaller of the two stars", "the leftmost of the circles": a comparative or
    superlative followed by "of" selects among the noun phrase (unlike "left of the star")."""
    if len(words) < 2 or words[-1] != "of":
        return False
    kw = words[-2]
    graded = kw.endswith(("most", "est", "er")) or kw in SUPERLATIVES[MIDDLE]
    return graded and any(kw in ws for ws in SUPERLATIVES.values())


def _superlatives_from_words(words: list[str]) -> tuple[list[tuple[str, str]], int, list[str]]:
    """Superlative (predicate, keyword) pairs in a phrase, the ordinal rank (1 if none) and the
    relation-only words that could not be used."""
    found: list[tuple[str, str]] = []
    rank, unused = 1, []
    for w in words:
        if w in ORDINALS:
            rank = ORDINALS[w]
            continue
        if w in ("far", "next", "most"):
            continue
        pred = next((p for p, ws in SUPERLATIVES.items() if w in ws), None)
        if pred is not None:
            if (pred, w) not in found and not any(p == pred for p, _ in found):
                found.append((pred, w))
        elif w in ALL_SPATIAL:
            unused.append(w)
    return found, rank, unused


class _Builder:
    def __init__(self, doc, expression: str, normalised: str, pipeline: str):
        self.doc = doc
        self.expression, self.normalised, self.pipeline = expression, normalised, pipeline
        self.heads = {t.i for t in doc if _is_entity_head(t)}
        self.entities: list[EntityNode] = []
        self.by_head: dict[int, EntityNode] = {}
        self.notes: list[str] = []
        self.leaf_groups: list[tuple[EntityNode, list, str]] = []
        self.consumed: set[int] = set()
        self.between_done: set[int] = set()

    # -- entities
    def new_entity(self, tok, rule: str) -> EntityNode:
        span = _span_tokens(tok, self.heads)
        keep = [t for t in span if _word(t) not in ALL_SPATIAL and _word(t) not in ORDINALS
                and _word(t) not in PLACE_NOUNS and t.dep_ != "case" and _word(t) != "'s"]
        content = [t for t in keep if t.pos_ not in ("DET", "PRON") and t.dep_ != "det"]
        generic = all(_word(t) in GENERIC_NOUNS for t in content)
        node = EntityNode(
            id=len(self.entities), text="" if generic else " ".join(t.text for t in keep),
            span=" ".join(t.text for t in span), head=tok.text, rule=rule, generic=generic,
            plural=tok.tag_ in ("NNS", "NNPS"), token_ids=[t.i for t in span], head_index=tok.i,
        )
        self.entities.append(node)
        self.by_head[tok.i] = node
        # superlatives written inside the noun phrase ("the leftmost red circle")
        mods = [t for t in span if t.i != tok.i]
        if any(_word(t) in ALL_SPATIAL or _word(t) in ORDINALS for t in mods):
            self.leaf_groups.append((node, mods, "modifier inside the noun phrase"))
        return node

    def implicit_entity(self, rule: str, text: str = "") -> EntityNode:
        node = EntityNode(id=len(self.entities), text=text, span="", head="", rule=rule,
                          generic=not text)
        self.entities.append(node)
        return node

    def entity_at(self, tok, rule: str) -> EntityNode:
        return self.by_head.get(tok.i) or self.new_entity(tok, rule)

    # -- head selection (METHODS 3.2: the ROOT token's noun phrase)
    def choose_head(self) -> EntityNode:
        doc = self.doc
        roots = [t for t in doc if t.dep_ == "ROOT" or t.head is t]
        if not self.heads:
            text = self.normalised
            node = self.implicit_entity("no noun phrase found: the whole expression is scored",
                                        text=text)
            if not text:
                node.rule = "no words to parse: every proposal equally likely"
            return node
        for r in roots:
            if r.i in self.heads:
                return self.new_entity(r, "ROOT noun phrase")
        root = roots[0]
        for child in root.children:
            if child.i in self.heads and child.dep_ in _SUBJ_OBJ and child.dep_ != "pobj":
                return self.new_entity(child, f"{child.dep_} of the root word {root.text!r}")

        def depth(t) -> int:
            return sum(1 for _ in t.ancestors)

        first = min((doc[i] for i in self.heads), key=lambda t: (depth(t), t.i))
        path = [a for a in reversed(list(first.ancestors))]
        words = [_word(t) for t in path]
        pred, kw, _ = _relation_from_path(words)
        if pred is not None and _is_partitive(words):
            return self.new_entity(first, f"partitive: {' '.join(words)!r} + noun phrase")
        if pred is not None:
            return self.implicit_entity(
                f"no noun before the relation {kw!r}: any object (uniform)")
        return self.new_entity(first, f"noun phrase nearest to the root word {root.text!r}")

    # -- walk (DFS over the dependency tree)
    def walk(self, tok, current: EntityNode, path: list) -> None:
        node = self.by_head.get(tok.i)
        if tok.i in self.heads and node is not current:
            if node is not None and node.id in self.between_done:
                self.walk_children(tok, node)
                return
            node = self.entity_at(tok, "noun phrase reached by the dependency walk")
            self.add_relation(current, node, path, tok)
            self.walk_children(tok, node)
            return
        if node is current:
            if path:
                self.leaf_groups.append((current, path, "keyword above the head noun"))
            self.walk_children(tok, current)
            return
        new_path = [*path, tok]
        if not any(t.i in self.heads for t in tok.subtree if t.i not in current.token_ids):
            leaf = [*new_path, *[t for t in tok.subtree if t is not tok]]
            self.leaf_groups.append((current, leaf, "keyword with no second entity"))
            return
        for child in tok.children:
            self.walk(child, current, new_path)

    def walk_children(self, tok, node: EntityNode) -> None:
        for child in tok.children:
            if child.i in node.token_ids:
                continue
            self.walk(child, node, [])

    def add_relation(self, src: EntityNode, dst: EntityNode, path: list, tok) -> None:
        words = [_word(t) for t in path]
        neg = any(w in NEGATIONS for w in words) or any(
            c.dep_ == "neg" or _word(c) in NEGATIONS for t in path for c in t.children)
        if tok.dep_ == "poss":
            src.relations.append(Relation(None, [dst.id], None, words, False,
                                          f"possessive: {dst.span!r} owns {src.head!r}"))
            return
        pred, kw, k = _relation_from_path(words)
        if pred is None:
            how = " ".join(words) or tok.dep_
            rule = f"no spatial keyword on the path {how!r}: shown, not scored"
            src.relations.append(Relation(None, [dst.id], None, words, neg, rule))
            return
        self.consumed.update(t.i for t in path[: k + 2])
        if k > 0:  # earlier keywords on the same path act on the source ("top circle left of")
            self.leaf_groups.append((src, path[:k], "keyword before a relation"))
        targets, rule = [dst.id], f"keyword {kw!r} -> {pred}"
        if pred == BETWEEN:
            conj = [c for c in tok.children if c.dep_ == "conj" and c.i in self.heads]
            if conj:
                other = self.entity_at(conj[0], "second noun phrase of 'between'")
                self.between_done.add(other.id)
                targets.append(other.id)
                rule += " (two arguments)"
            else:
                rule += " (one plural argument: both ends from the same entity)"
        src.relations.append(Relation(pred, targets, kw, words, neg, rule))

    # -- superlatives, ordinals, lifting
    def resolve_superlatives(self) -> None:
        ranks: dict[int, int] = {}
        for node, tokens, why in self.leaf_groups:
            toks = [t for t in tokens if t.i not in self.consumed]
            words = [_word(t) for t in toks]
            found, rank, unused = _superlatives_from_words(words)
            if rank > 1:
                ranks[node.id] = rank
            phrase = " ".join(_word(t) for t in sorted(tokens, key=lambda t: t.i))
            for pred, kw in found:
                if any(s.predicate == pred for s in node.superlatives):
                    continue
                node.superlatives.append(Superlative(pred, kw, 1, f"{why}: {phrase!r}"))
            for w in unused:
                node.notes.append(f"relation word {w!r} has no second entity: ignored")
        for node in self.entities:
            directional = [s for s in node.superlatives
                           if s.predicate in (LEFT, RIGHT, ABOVE, BELOW)]
            far = [s for s in node.superlatives if s.keyword in FAR_FROM]
            if directional and far:  # "the circle farthest to the left" = the leftmost circle
                node.superlatives = [s for s in node.superlatives if s not in far]
                node.notes.append(f"{far[0].keyword!r} + a direction: the direction decides")
            rank = ranks.get(node.id, 1)
            if rank > 1:
                if node.superlatives:
                    s = node.superlatives[0]
                    s.rank = rank
                    s.rule += f"; ordinal: number {rank} from that side"
                else:
                    node.notes.append(f"ordinal {rank} without a direction: ignored")

    def lift_superlatives(self) -> None:
        """"man with a hat on the left": the superlative of an entity linked by a non-spatial
        relation describes the head it hangs from (the reference crashes here)."""
        for node in self.entities:
            for rel in node.relations:
                if rel.predicate is not None:
                    continue
                for tid in rel.targets:
                    child = self.entities[tid]
                    if not child.superlatives or any(r.predicate for r in child.relations):
                        continue
                    for s in child.superlatives:
                        if not any(x.predicate == s.predicate for x in node.superlatives):
                            s.rule = f"lifted from {child.head!r} (linked without a spatial word)"
                            node.superlatives.append(s)
                    child.superlatives = []

    def build(self) -> ParseTree:
        head = self.choose_head()
        roots = [t for t in self.doc if t.dep_ == "ROOT" or t.head is t]
        for r in roots:
            self.walk(r, head, [])
        self.resolve_superlatives()
        self.lift_superlatives()
        tokens = [{"i": t.i, "text": t.text, "dep": t.dep_, "pos": t.pos_, "head": t.head.i}
                  for t in self.doc]
        return ParseTree(self.expression, self.normalised, self.entities, tokens, self.notes,
                         self.pipeline)


_NLP_LOCK = threading.Lock()


def parse_expression(expression: str, nlp=None) -> ParseTree:
    """Parse a referring expression into an entity tree (spaCy dependency parse).

    ``expression`` should already be validated (``regionlab.inputs.check_text``). ``nlp``
    defaults to :func:`regionlab.nlp.load_spacy`.
    """
    from ..nlp import load_spacy, pipeline_name

    nlp = nlp or load_spacy()
    normalised = normalise_expression(expression)
    with _NLP_LOCK:  # spaCy pipelines are not documented as thread-safe
        doc = nlp(normalised)
    return _Builder(doc, expression, normalised, pipeline_name(nlp)).build()


# ------------------------------------------------------------------------------ predicates


def box_geometry(boxes: np.ndarray) -> dict[str, np.ndarray]:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return {"cx": (b[:, 0] + b[:, 2]) / 2, "cy": (b[:, 1] + b[:, 3]) / 2,
            "area": np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None),
            "boxes": b}


def relation_matrix(predicate: str, boxes: np.ndarray, image_size: tuple[int, int],
                    weights: np.ndarray | None = None) -> np.ndarray:
    """Pairwise ``S[i, j]`` of a binary predicate over (P, 4) boxes ``x0, y0, x1, y1``; diagonal 0.

    ``image_size`` is (H, W) (scale of ``near``); ``weights`` (p over boxes) only for ``middle``.
    """
    g = box_geometry(boxes)
    cx, cy, area, b = g["cx"], g["cy"], g["area"], g["boxes"]
    n = len(cx)
    if predicate == LEFT:
        s = cx[:, None] < cx[None, :]
    elif predicate == RIGHT:
        s = cx[:, None] > cx[None, :]
    elif predicate == ABOVE:
        s = cy[:, None] < cy[None, :]
    elif predicate == BELOW:
        s = cy[:, None] > cy[None, :]
    elif predicate == BIGGER:
        s = area[:, None] > area[None, :]
    elif predicate == SMALLER:
        s = area[:, None] < area[None, :]
    elif predicate in (WITHIN, CONTAINS):
        iw = np.clip(np.minimum(b[:, None, 2], b[None, :, 2])
                     - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
        ih = np.clip(np.minimum(b[:, None, 3], b[None, :, 3])
                     - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
        inter = iw * ih
        s = inter / np.maximum(area[:, None], 1e-9)
        if predicate == CONTAINS:
            s = s.T
    elif predicate in (NEAR, FAR):
        d = np.hypot(cx[:, None] - cx[None, :], cy[:, None] - cy[None, :])
        off = ~np.eye(n, dtype=bool)
        if predicate == NEAR:
            scale = 0.1 * float(np.hypot(*image_size))
            dmin = np.where(off, d, np.inf).min(axis=0, keepdims=True) if n > 1 else d
            s = np.exp(-(d - dmin) / max(scale, 1e-9))
        else:
            dmax = np.where(off, d, 0).max(axis=0, keepdims=True)
            s = d / np.maximum(dmax, 1e-9)
    elif predicate == MIDDLE:
        w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=np.float64)
        w = w / max(w.sum(), 1e-12)
        dc = np.hypot(cx - (w * cx).sum(), cy - (w * cy).sum())
        s = dc[:, None] < dc[None, :]
    else:
        raise ValueError(f"unknown predicate {predicate!r}")
    s = np.asarray(s, dtype=np.float64)
    np.fill_diagonal(s, 0.0)
    return s


def between_tensor(boxes: np.ndarray) -> np.ndarray:
    """``B[i, j, k]``: how much box i lies between boxes j and k (0 unless its centre projects
    strictly inside the segment j-k; then 1 - perpendicular distance / |jk|, floored at 0)."""
    g = box_geometry(boxes)
    c = np.stack([g["cx"], g["cy"]], axis=1)
    n = len(c)
    seg = c[None, None, :, :] - c[None, :, None, :]  # (1, j, k, 2): c_k - c_j
    rel = c[:, None, None, :] - c[None, :, None, :]  # (i, j, 1, 2): c_i - c_j
    length2 = (seg ** 2).sum(-1)  # (1, j, k)
    t = (rel * seg).sum(-1) / np.maximum(length2, 1e-12)
    perp = np.abs(rel[..., 0] * seg[..., 1] - rel[..., 1] * seg[..., 0]) / np.sqrt(
        np.maximum(length2, 1e-12))
    out = ((t > 0) & (t < 1)) * np.clip(1 - perp / np.sqrt(np.maximum(length2, 1e-12)), 0, 1)
    idx = np.arange(n)
    out[idx, idx, :] = 0
    out[idx, :, idx] = 0
    out[:, idx, idx] = 0
    return out


def _normalise(p: np.ndarray) -> np.ndarray | None:
    s = p.sum()
    return p / s if s > 0 and np.isfinite(s) else None


def apply_relation(p: np.ndarray, relation: Relation, target_probs: list[np.ndarray],
                   boxes: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """``p <- normalise(p * r)``, ``r[i] = sum_j S[i, j] q[j]`` (between: ``sum B[i,j,k] q1 q2``).

    Returns the new p and a note when the product vanished (then p is kept)."""
    if relation.predicate == BETWEEN:
        q1 = target_probs[0]
        q2 = target_probs[1] if len(target_probs) > 1 else q1
        r = np.einsum("ijk,j,k->i", between_tensor(boxes), q1, q2)
    else:
        s = relation_matrix(relation.predicate, boxes, image_size)
        if relation.negated:
            s = 1.0 - s
            np.fill_diagonal(s, 0.0)
        r = s @ target_probs[0]
    new = _normalise(p * r)
    if new is None:
        return p, f"relation {relation.predicate} matched no proposal: ignored"
    return new, None


def apply_superlative(p: np.ndarray, sup: Superlative, boxes: np.ndarray,
                      image_size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """Reference (rank 1): ``p[i] <- normalise(p[i] * sum_j p[j] S[i, j])``.

    Rank k > 1 (ours): with candidate weights ``c = min(1, p / (0.1 max p))`` and
    ``n_i = sum_j c_j S[j, i]`` (candidates further to that side than i),
    ``p[i] <- normalise(p[i] * exp(-(n_i - (k - 1))^2 / 0.5))``."""
    s = relation_matrix(sup.predicate, boxes, image_size, weights=p)
    if sup.rank <= 1:
        new = _normalise(p * (s @ p))
    else:
        c = np.minimum(1.0, p / max(0.1 * p.max(), 1e-30))
        n_better = s.T @ c
        new = _normalise(p * np.exp(-((n_better - (sup.rank - 1)) ** 2) / 0.5))
    if new is None:
        return p, f"superlative {sup.name} left no candidate: ignored"
    return new, None


def execute_tree(tree: ParseTree, ips: dict[int, np.ndarray], boxes: np.ndarray,
                 image_size: tuple[int, int]) -> tuple[dict[int, np.ndarray], list[str]]:
    """Every entity's distribution over the P proposals (METHODS.md 3.2).

    ``ips[e]`` is IPS(entity e's text) (generic entities may be missing: uniform). Returns
    ({entity id: p}, notes); the head's p is ``result[0]``."""
    n = len(np.asarray(boxes).reshape(-1, 4))
    out: dict[int, np.ndarray] = {}
    notes: list[str] = []

    def dist(eid: int, stack: tuple) -> np.ndarray:
        if eid in out:
            return out[eid]
        node = tree.entities[eid]
        base = ips.get(eid)
        p = np.full(n, 1.0 / n) if base is None or node.generic else np.asarray(base, float)
        p = p / p.sum()
        for rel in node.relations:
            if rel.predicate is None or any(t in stack for t in rel.targets):
                continue
            qs = [dist(t, (*stack, eid)) for t in rel.targets]
            p, note = apply_relation(p, rel, qs, boxes, image_size)
            if note:
                notes.append(f"entity {eid}: {note}")
        for sup in node.superlatives:
            p, note = apply_superlative(p, sup, boxes, image_size)
            if note:
                notes.append(f"entity {eid}: {note}")
        out[eid] = p
        return p

    for e in tree.entities:
        dist(e.id, ())
    return out, notes
