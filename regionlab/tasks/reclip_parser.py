"""ReCLIP's relation and superlative parser (METHODS.md 3.2), with the gaps of the reference filled.

An expression is parsed with spaCy into an *entity tree*: the head entity (the noun phrase the
expression is about), and for every entity its relations to other entities ("left of the blue
square") and its superlatives ("the leftmost", "on the left"). Keyword tables live in
:mod:`.reclip_words` (a new word is one entry), the tree in :mod:`.reclip_tree`, scoring in
:mod:`.reclip_scoring`; how tree and IPS make the final choice is ``GroundingOptions.combine``.

Beyond the reference (each with a test): farthest/nearest, bottom/lower/upper/highest/lowest,
topmost/bottommost, tallest/shortest, frontmost, middle/center, next to/beside/near, k-th from a
side with or without a noun ("the second from the left"), negation of relations and of
superlatives ("not on the left"), the viewer ("closest to the camera" is a superlative, not a
relation to a "camera" box), orientation ("zebra facing left" is IPS text, not a position),
plurals with a count ("the two people on the left": ``EntityNode.count``), "far left of X"
(leftmost within X), "between A and B" (the reference computes and then discards it), a relation
with no noun before it ("left of the star": an implicit, uniform head), odd casing/punctuation.

Named differences: the tree is used only when a relation or superlative is *extracted*
(:attr:`ParseTree.uses_spatial`); the reference uses it whenever a keyword appears. Non-spatial
links ("with a hat", "eating grass", a possessive) are folded into the IPS text of the entity
they describe, as the reference does, and the linked entity's superlative or spatial relation
is lifted to it ("man with a hat on the left": the man is leftmost; "horse eating grass near the
fence": the horse is near the fence). The diagonal of ``within`` is 0; "closest/nearest (to) X"
and "farthest from X" are distance relations to X (the reference maps "closer" to ``bigger``
even with a "to"); without a second entity they keep the reference's ``bigger``/``smaller``;
spatial keywords are removed from an entity's IPS text. (This text once said the reference
crashes on "man with a hat on the left"; run on 92 expressions its parse never crashed.)
"""


from __future__ import annotations

import threading

from .reclip_tree import EntityNode, ParseTree, Relation, Superlative
from .reclip_words import (
    _MODIFIER_DEPS,
    _SUBJ_OBJ,
    ABOVE,
    ALL_SPATIAL,
    BELOW,
    BETWEEN,
    COLOUR_WORDS,
    COUNTS,
    EXTREME_MODIFIERS,
    FAR,
    FAR_FROM,
    GENERIC_NOUNS,
    LEFT,
    LEXICON_NOUNS,
    MIDDLE,
    NEAR,
    NEAR_TO,
    NEGATIONS,
    NULL_WORDS,
    ORDINALS,
    ORIENTATION_VERBS,
    PLACE_NOUNS,
    RELATIONS,
    RIGHT,
    SUPERLATIVES,
    VIEWER_WORDS,
    WITHIN,
    normalise_expression,
)

# ------------------------------------------------------------------------------ parsing


def _word(tok) -> str:
    return tok.lower_


def _is_entity_head(tok) -> bool:
    w, lemma = _word(tok), tok.lemma_.lower()
    if w in PLACE_NOUNS or w in NULL_WORDS or lemma in NULL_WORDS or w in ALL_SPATIAL:
        return False
    if w in ORDINALS or w in NEGATIONS or w in VIEWER_WORDS or w in ORIENTATION_VERBS:
        return False
    nouny = (tok.pos_ in ("NOUN", "PROPN") or w in LEXICON_NOUNS or lemma in LEXICON_NOUNS
             or w.split()[-1] in LEXICON_NOUNS)  # a merged "orange cross"
    if not nouny:
        return False
    # a modifier of a following noun ("green" in "the green cross", "square" in "square table")
    head = tok.head
    if head is not tok and head.i > tok.i and tok.dep_ in _MODIFIER_DEPS and (
        head.pos_ in ("NOUN", "PROPN") or _word(head) in LEXICON_NOUNS
    ) and not any(_word(head) in ws for ws in (ORIENTATION_VERBS, VIEWER_WORDS, ALL_SPATIAL,
                                               ORDINALS, PLACE_NOUNS)):
        return False
    return True


def _span_tokens(tok, heads: set[int]) -> list:
    """The head and its left modifiers (possessors excluded: they are entities of their own).

    A noun that spaCy attached as a modifier of a later non-noun ("square" -> "furthest" in
    "the yellow square furthest to the right") also takes the words before it that hang from
    that same word ("the yellow")."""
    out = [tok]
    head = tok.head
    if head is not tok and head.i > tok.i and tok.dep_ in _MODIFIER_DEPS:
        out += [t for c in head.lefts if c.i < tok.i and c.dep_ in _MODIFIER_DEPS
                and c.i not in heads for t in c.subtree if t.i < tok.i]
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
        if w in NEAR_TO and (nxt == "to" or (k == len(words) - 1 and w != "next")):
            pred = NEAR  # "closest to the star", "the star nearest the circle"
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
    for k, w in enumerate(words):
        if w in ORDINALS:
            rank = ORDINALS[w]
            continue
        if w in ("far", "next", "most"):
            continue
        if w in NEAR_TO and any(x in PLACE_NOUNS for x in words[k + 1:]):
            continue  # "nearest the bottom" is the bottommost, not the biggest
        pred = next((p for p, ws in SUPERLATIVES.items() if w in ws), None)
        if pred is not None:
            if (pred, w) not in found and not any(p == pred for p, _ in found):
                found.append((pred, w))
        elif w in ALL_SPATIAL:
            unused.append(w)
    return found, rank, unused


def _count(tok) -> int:
    """How many objects a plural noun phrase asks for ("the two people", "both cups"): 1 for a
    singular or an uncounted plural."""
    if tok.tag_ not in ("NNS", "NNPS") and _word(tok) not in ("people", "men", "women",
                                                               "children"):
        return 1
    if tok.dep_ == "pobj" and _word(tok.head) == "of":  # partitive: "the leftmost of the three"
        return 1
    for child in tok.lefts:
        w = _word(child)
        if w in COUNTS:
            return COUNTS[w]
        if child.dep_ == "nummod" and w.isdigit() and 1 < int(w) <= 10:
            return int(w)
    return 1


def _negated(tokens) -> bool:
    """Does a negation word stand in or directly under these tokens ("not on the left")?"""
    return any(_word(t) in NEGATIONS or any(c.dep_ == "neg" or _word(c) in NEGATIONS
                                            for c in t.children) for t in tokens)


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
            count=_count(tok),
        )
        if not generic:  # "the girl in pink": a describing phrase with no noun of its own
            for child in tok.rights:
                sub = list(child.subtree)
                if child.dep_ == "prep" and not any(
                        t.i in self.heads or _word(t) in ALL_SPATIAL or _word(t) in NEGATIONS
                        or _word(t) in PLACE_NOUNS or _word(t) in VIEWER_WORDS for t in sub):
                    node.text += " " + " ".join(t.text for t in sub)
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
            if any(_word(t) in ALL_SPATIAL or _word(t) in ORDINALS for t in doc):
                return self.implicit_entity(
                    "no noun before the spatial words: any object (uniform)")
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
        pred, kw, k = _relation_from_path(words)
        if pred is not None and first.i < path[k].i:  # "the square closest to the circle"
            return self.new_entity(first, f"noun phrase before the relation {kw!r}")
        if pred is not None and _is_partitive(words):
            node = self.new_entity(first, f"partitive: {' '.join(words)!r} + noun phrase")
            node.count = 1  # "the taller of the two men" is one man
            return node
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
        if pred is None and words[:1] in (["to"], ["from"]):
            # "the nearest star to the circle": the distance word sits inside the noun phrase
            wanted = NEAR_TO if words[0] == "to" else FAR_FROM
            inside = [self.doc[i] for i in src.token_ids if _word(self.doc[i]) in wanted]
            if inside:
                pred, kw, k = (NEAR if words[0] == "to" else FAR), _word(inside[0]), 0
                self.consumed.add(inside[0].i)
        if pred is None:
            how = " ".join(words) or tok.dep_
            rule = f"no spatial keyword on the path {how!r}: shown, not scored"
            src.relations.append(Relation(None, [dst.id], None, words, neg, rule))
            if any(w in ALL_SPATIAL for w in words):  # "the kite highest in the sky"
                self.leaf_groups.append((src, path, "superlative on a non-spatial path"))
            return
        self.consumed.update(t.i for t in path[: k + 2])
        if k > 0:  # earlier keywords on the same path act on the source ("top circle left of")
            self.leaf_groups.append((src, path[:k], "keyword before a relation"))
        targets, rule = [dst.id], f"keyword {kw!r} -> {pred}"
        key_tok = path[k] if 0 <= k < len(path) else None
        if (key_tok is not None and pred in (LEFT, RIGHT, ABOVE, BELOW)
                and any(_word(c) in EXTREME_MODIFIERS for c in key_tok.children)):
            # "on the far left of the couch": the extreme inside the couch, not beside it
            src.superlatives.append(Superlative(pred, kw, 1, f"'far {kw}' of {dst.span!r}"))
            src.relations.append(Relation(WITHIN, targets, kw, words, neg,
                                          f"'far {kw} of': within {dst.span!r}, {kw}most"))
            return
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
            turn = [t for t in toks if _word(t) in ORIENTATION_VERBS]
            if turn:  # "zebra facing left": how it is turned, scored by IPS, not a position
                extra = [t for t in toks if t.i > turn[0].i]
                node.text = " ".join([node.text or node.head, *(_word(t) for t in
                                                                [turn[0], *extra])]).strip()
                node.notes.append(f"{_word(turn[0])!r} + direction: an orientation (IPS text), "
                                  f"not a position")
                self.consumed.update(t.i for t in toks)
                continue
            words = [_word(t) for t in toks]
            negated = _negated(toks) or _negated([t.head for t in toks])
            found, rank, unused = _superlatives_from_words(words)
            if rank > 1:
                ranks[node.id] = rank
            phrase = " ".join(_word(t) for t in sorted(tokens, key=lambda t: t.i))
            for pred, kw in found:
                if any(s.predicate == pred for s in node.superlatives):
                    continue
                node.superlatives.append(Superlative(pred, kw, 1, f"{why}: {phrase!r}",
                                                     negated=negated))
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

    def lift_and_fold(self) -> None:
        """Non-spatial links ("with", a verb, a possessive) describe the entity they hang from:

        - a superlative of the linked entity is lifted to it ("man with a hat on the left": the
          man is leftmost);
        - a spatial relation of the linked entity is lifted too, except across "of" ("horse
          eating grass near the fence": the horse is near the fence);
        - the linked words are folded into its IPS text, as the reference does ("the kid in
          the red shirt" is scored as a whole)."""
        for node in self.entities:
            for rel in node.relations:
                if rel.predicate is not None:
                    continue
                for tid in rel.targets:
                    child = self.entities[tid]
                    spatial = [r for r in child.relations if r.predicate]
                    if child.superlatives and not spatial:
                        for s in child.superlatives:
                            if not any(x.predicate == s.predicate for x in node.superlatives):
                                s.rule = (f"lifted from {child.head!r} (linked without a "
                                          f"spatial word)")
                                node.superlatives.append(s)
                        child.superlatives = []
                    if spatial and rel.path != ["of"] and not rel.rule.startswith("possessive"):
                        for r in spatial:
                            r.rule += f"; lifted from {child.head!r} (linked by {rel.path!r})"
                            node.relations.append(r)
                        child.relations = [r for r in child.relations if not r.predicate]
                    if rel.negated:  # IPS cannot score "not wearing a hat"
                        node.notes.append(f"negated description {' '.join(rel.path)!r} "
                                          f"{child.span!r}: not scored")
                    elif child.text and not child.generic and node.text:
                        if rel.rule.startswith("possessive"):
                            node.text = f"{child.text}'s {node.text}"
                        else:
                            words = [w for w in rel.path if w not in ALL_SPATIAL]
                            node.text = " ".join([node.text, *words, child.text])

    def build(self) -> ParseTree:
        head = self.choose_head()
        roots = [t for t in self.doc if t.dep_ == "ROOT" or t.head is t]
        for r in roots:
            self.walk(r, head, [])
        self.resolve_superlatives()
        self.lift_and_fold()
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
        doc = nlp.make_doc(normalised)
        pairs = [i for i in range(len(doc) - 1) if doc[i].lower_ in COLOUR_WORDS
                 and doc[i + 1].lower_ in LEXICON_NOUNS and doc[i + 1].lower_ not in ("one",
                                                                                    "ones")]
        with doc.retokenize() as retok:
            for i in pairs:
                retok.merge(doc[i:i + 2])
        for _, component in nlp.pipeline:
            doc = component(doc)
    return _Builder(doc, expression, normalised, pipeline_name(nlp)).build()

