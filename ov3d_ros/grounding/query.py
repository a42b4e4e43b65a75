"""Query understanding without downloads: the target noun phrase, its attributes, and relations with anchors.

Rules over the vocabulary: class names and synonyms (longest match first, plural "s" / "es" accepted) are the
nouns; a fixed lexicon of relation cues ("on top of", "next to", "between ... and", "to the left of", "closest
to", "largest", ...) introduces anchors; colour and size adjectives are attributes. The first class mention that
no relation cue governs is the target. Token positions of the target, attribute and relation words are kept for
the fine stage's masked keyword reconstruction. A bare "nearest" / "farthest" before a class name ("the nearest
chair to the door") makes that name the target; its anchor, if any, follows "to" / "from".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

# relation cue (as words) -> relation kind; longest cues are matched first
RELATION_CUES: dict[tuple[str, ...], str] = {
    ("on", "top", "of"): "on", ("on",): "on", ("sitting", "on"): "on", ("standing", "on"): "on",
    ("above",): "above", ("over",): "above", ("under",): "below", ("below",): "below", ("beneath",): "below",
    ("underneath",): "below",
    ("next", "to"): "next_to", ("beside",): "next_to", ("near",): "next_to", ("by",): "next_to",
    ("close", "to"): "next_to", ("adjacent", "to"): "next_to",
    ("between",): "between",
    ("to", "the", "left", "of"): "left", ("on", "the", "left", "of"): "left", ("left", "of"): "left",
    ("to", "the", "right", "of"): "right", ("on", "the", "right", "of"): "right", ("right", "of"): "right",
    ("closest", "to"): "closest", ("nearest", "to"): "closest", ("closest",): "closest", ("nearest",): "closest",
    ("farthest", "from"): "farthest", ("furthest", "from"): "farthest", ("farthest",): "farthest",
    ("furthest",): "farthest",
    ("in", "front", "of"): "front", ("behind",): "behind",
}
# superlatives that compare the target with the others of its class (no anchor)
EXTREMES: dict[str, str] = {"largest": "largest", "biggest": "largest", "smallest": "smallest",
                            "tiniest": "smallest", "tallest": "tallest", "highest": "tallest",
                            "shortest": "shortest", "lowest": "shortest"}
COLOURS = frozenset({"white", "black", "grey", "gray", "light", "dark", "red", "blue", "green", "yellow",
                     "orange", "purple", "pink", "brown", "beige", "tan", "silver", "gold", "wooden", "wood",
                     "metal", "glass", "cream", "navy", "teal"})
SIZES = frozenset({"large", "big", "small", "little", "tiny", "tall", "short", "long", "wide", "narrow", "huge",
                   "low", "high"})
_CUES_LONGEST_FIRST = sorted(RELATION_CUES, key=len, reverse=True)
DETERMINERS = frozenset({"the", "a", "an", "this", "that", "these", "those", "its", "one", "two", "other"})
MAX_NAME_WORDS = 4


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, inner apostrophes)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


@dataclass(frozen=True)
class Mention:
    """A class name or synonym found in the query: its words, their token span and the class index."""

    phrase: str
    start: int
    end: int          # exclusive
    label: int


@dataclass(frozen=True)
class Relation:
    """A relation cue and the mentions it governs (none for superlatives, two for "between")."""

    kind: str
    cue: str
    start: int
    end: int
    anchors: tuple[Mention, ...] = ()


@dataclass(frozen=True)
class ParsedQuery:
    """What the grounder needs from a sentence."""

    text: str
    tokens: tuple[str, ...]
    target: Mention | None                     # None: no known class named; see `target_phrase`
    target_phrase: str                         # the target's words (the guessed head noun when unknown)
    attributes: tuple[str, ...]
    relations: tuple[Relation, ...]
    keywords: dict[str, tuple[int, ...]] = field(default_factory=dict)  # role -> token positions

    @property
    def target_label(self) -> int | None:
        return None if self.target is None else self.target.label

    @property
    def anchors(self) -> tuple[Mention, ...]:
        return tuple(a for r in self.relations for a in r.anchors)


class QueryParser:
    """Parses sentences against a vocabulary's names: `labels` (class order) and `synonyms` (label -> names)."""

    def __init__(self, labels: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None = None) -> None:
        self.labels = tuple(labels)
        self._names: dict[tuple[str, ...], int] = {}
        for index, label in enumerate(self.labels):
            for name in (label, *((synonyms or {}).get(label, ()))):
                words = tuple(tokenize(name))
                if words and len(words) <= MAX_NAME_WORDS:
                    self._names.setdefault(words, index)

    def mentions(self, tokens: Sequence[str]) -> list[Mention]:
        """Non-overlapping class mentions, left to right, longest match at each position."""
        found, i = [], 0
        while i < len(tokens):
            for length in range(min(MAX_NAME_WORDS, len(tokens) - i), 0, -1):
                label = self._lookup(tokens[i:i + length])
                if label is not None and not self._modifies_next(tokens, i, i + length):
                    found.append(Mention(" ".join(tokens[i:i + length]), i, i + length, label))
                    i += length
                    break
            else:
                i += 1
        return found

    def _modifies_next(self, tokens: Sequence[str], start: int, end: int) -> bool:
        """A name made of adjectives ("light") that is followed by an adjective or a noun ("light grey window") is
        an adjective there, not a mention."""
        adjectives = COLOURS | SIZES
        if end >= len(tokens) or not all(t in adjectives for t in tokens[start:end]):
            return False
        return tokens[end] in adjectives or any(self._lookup(tokens[end:end + n]) is not None
                                                for n in range(1, MAX_NAME_WORDS + 1) if end + n <= len(tokens))

    def _lookup(self, words: Sequence[str]) -> int | None:
        words = tuple(words)
        if words in self._names:
            return self._names[words]
        last = words[-1]
        for singular in (last[:-2] if last.endswith("es") else None, last[:-1] if last.endswith("s") else None):
            if singular and (*words[:-1], singular) in self._names:
                return self._names[(*words[:-1], singular)]
        return None

    def parse(self, text: str) -> ParsedQuery:
        tokens = tokenize(text)
        mentions = self.mentions(tokens)
        relations = self._relations(tokens, mentions)
        governed = {id(a) for r in relations for a in r.anchors}
        free = [m for m in mentions if id(m) not in governed]
        target = free[0] if free else (mentions[0] if mentions else None)
        if target is not None and id(target) in governed:       # every mention is an anchor: no target named
            target = None
        phrase = target.phrase if target is not None else self._guess_head(tokens, relations)
        attributes, attribute_positions = self._attributes(tokens, target, relations)
        relation_positions = tuple(p for r in relations for p in range(r.start, r.end))
        keywords = {"target": tuple(range(target.start, target.end)) if target is not None else (),
                    "attribute": attribute_positions, "relation": relation_positions}
        return ParsedQuery(text, tuple(tokens), target, phrase, attributes, tuple(relations), keywords)

    def _relations(self, tokens: Sequence[str], mentions: list[Mention]) -> list[Relation]:
        relations, i = [], 0
        while i < len(tokens):
            if tokens[i] in EXTREMES:
                relations.append(Relation(EXTREMES[tokens[i]], tokens[i], i, i + 1))
                i += 1
                continue
            cue = next((c for c in _CUES_LONGEST_FIRST if tuple(tokens[i:i + len(c)]) == c), None)
            if cue is None or (cue == ("by",) and not self._next_mention(mentions, i + 1, tokens)):
                i += 1
                continue
            kind, end = RELATION_CUES[cue], i + len(cue)
            first = self._next_mention(mentions, end, tokens)
            if len(cue) == 1 and kind in ("closest", "farthest") and first is not None:
                # "the nearest chair (to the door)": the chair is what is nearest; the anchor follows "to" / "from"
                linked = first.end < len(tokens) and tokens[first.end] in ("to", "from")
                anchor = self._next_mention(mentions, first.end + 1, tokens) if linked else None
                relations.append(Relation(kind, cue[0], i, end, (anchor,) if anchor is not None else ()))
                i = end
                continue
            anchors: tuple[Mention, ...] = (first,) if first is not None else ()
            if kind == "between" and first is not None:
                rest = [m for m in mentions if m.start >= first.end and "and" in tokens[first.end:m.start]]
                anchors = (first, rest[0]) if rest else anchors
            if anchors or kind in ("closest", "farthest"):
                relations.append(Relation(kind, " ".join(cue), i, end, anchors))
            i = end
        return relations

    @staticmethod
    def _next_mention(mentions: list[Mention], position: int, tokens: Sequence[str]) -> Mention | None:
        """The mention starting at `position` after determiners and adjectives, if any."""
        starts = {m.start: m for m in mentions}
        while position < len(tokens) and position not in starts and (
                tokens[position] in DETERMINERS or tokens[position] in COLOURS or tokens[position] in SIZES):
            position += 1
        return starts.get(position)

    @staticmethod
    def _attributes(tokens: Sequence[str], target: Mention | None,
                    relations: list[Relation]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """Colour / size words not describing an anchor: the adjectives before the target, and any elsewhere that
        do not directly precede an anchor."""
        anchor_starts = {a.start for r in relations for a in r.anchors}
        words, positions = [], []
        for i, token in enumerate(tokens):
            if token not in COLOURS and token not in SIZES:
                continue
            j = i
            while j < len(tokens) and (tokens[j] in COLOURS or tokens[j] in SIZES):
                j += 1
            if j in anchor_starts and (target is None or j != target.start):
                continue
            words.append(token)
            positions.append(i)
        return tuple(words), tuple(positions)

    @staticmethod
    def _guess_head(tokens: Sequence[str], relations: list[Relation]) -> str:
        """The last content word before the first relation cue (or of the sentence): an unknown target's noun."""
        stop = relations[0].start if relations else len(tokens)
        content = [t for t in tokens[:stop] if t not in DETERMINERS and t not in COLOURS and t not in SIZES
                   and t not in ("is", "it", "there", "find", "in", "room")]
        return content[-1] if content else ""
