"""The entity tree of a referring expression (what the parser builds, what scoring reads)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .reclip_words import SUPERLATIVE_NAMES

# ------------------------------------------------------------------------------ the tree


@dataclass
class Superlative:
    """``rank`` k > 1 means "k-th from that side" (second from the left)."""

    predicate: str
    keyword: str
    rank: int = 1
    rule: str = ""
    negated: bool = False

    @property
    def name(self) -> str:
        base = SUPERLATIVE_NAMES.get(self.predicate, self.predicate)
        base = base if self.rank == 1 else f"{base} #{self.rank}"
        return f"not {base}" if self.negated else base

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
    count: int = 1
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


