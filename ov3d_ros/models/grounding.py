"""Grounding networks: the keyword reconstructor (the fine stage of the coarse-to-fine teacher) and the two-stage
grounder it is distilled into.

Both see an object as its unit language feature, mean colour and shape (`grounding.objects`), and its context as
the M nearest other objects with their geometry relative to it in the view frame, so relations are decided by
where the anchors are and how big they are, not by words alone. Words enter as their text-space vectors, so a word
never seen in training still means what the text encoder says it means.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ov3d_ros.grounding.objects import ABSOLUTE_FEATURES, PAIR_FEATURES


@dataclass(frozen=True)
class GroundingModelConfig:
    """Shape of either network (stored in its checkpoint)."""

    feature_dim: int = 384        # the text space's dimension (object features and word vectors)
    dim: int = 128                # token width
    heads: int = 4                # attention heads (divide dim)
    layers: int = 2               # decoder layers of the keyword reconstructor (the grounder has one matcher)
    dropout: float = 0.1
    max_words: int = 48           # longer sentences are cut

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(inputs: int, dim: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, dim), nn.GELU(), nn.Linear(dim, outputs))


class ObjectEncoder(nn.Module):
    """(…, D + 3 + ABSOLUTE_FEATURES) object inputs -> (…, dim) tokens."""

    def __init__(self, config: GroundingModelConfig) -> None:
        super().__init__()
        self.net = _mlp(config.feature_dim + 3 + ABSOLUTE_FEATURES, config.dim, config.dim)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.norm(self.net(inputs))


class WordEncoder(nn.Module):
    """(B, L, D) word vectors -> (B, L, dim) tokens with positions; masked positions get a learned mask token."""

    def __init__(self, config: GroundingModelConfig) -> None:
        super().__init__()
        self.project = nn.Linear(config.feature_dim, config.dim)
        self.position = nn.Embedding(config.max_words, config.dim)
        self.mask_token = nn.Parameter(torch.zeros(config.dim))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, words: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.project(words)
        if masked is not None:
            tokens = torch.where(masked[..., None], self.mask_token.expand_as(tokens), tokens)
        positions = torch.arange(words.shape[1], device=words.device).clamp(max=self.position.num_embeddings - 1)
        return self.norm(tokens + self.position(positions))


class KeywordReconstructor(nn.Module):
    """Reconstructs a sentence's masked words from one candidate object and its context (a transformer decoder
    whose memory is the candidate's neighbourhood: its own token first, then its nearest objects', each carrying
    its geometry relative to the candidate). Logits are over `vocabulary` (V, D) word vectors, so the output layer
    is tied to the text space. The memory does not depend on the sentence, so inference computes it once per map."""

    def __init__(self, config: GroundingModelConfig, vocabulary: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        self.objects = ObjectEncoder(config)
        self.pairs = _mlp(PAIR_FEATURES, config.dim, config.dim)
        self.role = nn.Embedding(2, config.dim)               # 0 candidate, 1 context
        self.words = WordEncoder(config)
        layer = nn.TransformerDecoderLayer(config.dim, config.heads, 2 * config.dim, config.dropout,
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, config.layers)
        self.norm = nn.LayerNorm(config.dim)
        self.output = nn.Linear(config.feature_dim, config.dim)
        self.register_buffer("vocabulary", vocabulary.float())
        self.bias = nn.Parameter(torch.zeros(len(vocabulary)))

    def memory(self, context: torch.Tensor, context_pairs: torch.Tensor) -> torch.Tensor:
        """(…, K, dim) memory of neighbourhoods: context (…, K, Din) object inputs, the candidate first;
        context_pairs (…, K, PAIR_FEATURES) relative to the candidate."""
        roles = torch.ones(context.shape[-2], dtype=torch.long, device=context.device)
        roles[0] = 0
        return self.objects(context) + self.pairs(context_pairs) + self.role(roles)

    def forward(self, words: torch.Tensor, masked: torch.Tensor, word_padding: torch.Tensor,
                memory: torch.Tensor, memory_padding: torch.Tensor) -> torch.Tensor:
        """(B, L, V) logits. words (B, L, D), masked / word_padding (B, L) bool; memory (B, K, dim) from
        `memory`, memory_padding (B, K) bool."""
        hidden = self.decoder(self.words(words, masked), memory, tgt_key_padding_mask=word_padding,
                              memory_key_padding_mask=memory_padding)
        return self.norm(hidden) @ self.output(self.vocabulary).T + self.bias


def gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, P, K, C) rows of values (B, P, C) at index (B, P, K) into P."""
    b, p, _ = values.shape
    flat = (index + torch.arange(b, device=index.device).view(b, 1, 1) * p).reshape(-1)
    return values.reshape(b * p, -1).index_select(0, flat).view(*index.shape, -1)


@dataclass(frozen=True, eq=False)
class MapEncoding:
    """The sentence-independent part of the grounder's pass over a map: object tokens (B, P, dim) and the
    geometry part of each neighbour's key and value (B, P, K, 2 dim)."""

    tokens: torch.Tensor
    pair_key_values: torch.Tensor


def _attend(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, padding: torch.Tensor,
            dropout: float) -> torch.Tensor:
    """Multi-head attention: query (N, H, Q, hd) over keys / values (N, H, M, hd) with padding (N, M) True
    where a key is absent -> (N, Q, H * hd)."""
    out = F.scaled_dot_product_attention(query, keys, values, attn_mask=~padding[:, None, None, :],
                                         dropout_p=dropout)
    return out.transpose(1, 2).flatten(2)


class TwoStageGrounder(nn.Module):
    """The distilled grounder: one pass scores every proposal of a scene for a sentence.

    Proposal encoder: each object's token (feature, colour, shape) plus its coarse class / feature match with the
    query. Matcher: each object reads the sentence (cross-attention over the words), then, with what it read,
    looks over its neighbourhood (attention whose keys and values carry each neighbour's geometry relative to it:
    where the anchors are and how big). A score per object comes from its token, what it read and what it found.
    The tokens and the geometry terms do not depend on the sentence (`encode_map`): inference computes them once
    per map, so a query costs a few small matrix products."""

    def __init__(self, config: GroundingModelConfig) -> None:
        super().__init__()
        d = config.dim
        self.config = config
        self.objects = ObjectEncoder(config)
        self.coarse = nn.Linear(2, d)
        self.pairs = _mlp(PAIR_FEATURES, d, d)
        self.pair_key_value = nn.Linear(d, 2 * d, bias=False)
        self.words = WordEncoder(config)
        self.word_key_value = nn.Linear(d, 2 * d)
        self.read_query = nn.Linear(d, d)
        self.relate_query = nn.Linear(d, d)
        self.neighbour_key_value = nn.Linear(d, 2 * d)
        self.norm = nn.LayerNorm(3 * d)
        self.score = _mlp(3 * d, d, 1)

    def encode_map(self, objects: torch.Tensor, pairs: torch.Tensor) -> MapEncoding:
        """objects (B, P, Din) inputs, pairs (B, P, K, PAIR_FEATURES) of their neighbourhoods."""
        return MapEncoding(self.objects(objects), self.pair_key_value(self.pairs(pairs)))

    def forward(self, words: torch.Tensor, word_padding: torch.Tensor, coarse: torch.Tensor,
                object_padding: torch.Tensor, neighbours: torch.Tensor, neighbour_padding: torch.Tensor,
                encoding: MapEncoding) -> torch.Tensor:
        """(B, P) scores (-inf at padding). words (B, L, D); coarse (B, P, 2) class and feature similarity of
        each object to the query; neighbours (B, P, K); `encoding` of the same objects from `encode_map`."""
        b, p, k = neighbours.shape
        heads, head_dim = self.config.heads, self.config.dim // self.config.heads
        dropout = self.config.dropout if self.training else 0.0
        x = encoding.tokens + self.coarse(coarse)
        word_keys, word_values = self.word_key_value(self.words(words)).view(b, -1, 2, heads, head_dim) \
            .permute(2, 0, 3, 1, 4)                                              # 2 x (B, H, L, hd)
        read = _attend(self.read_query(x).view(b, p, heads, head_dim).transpose(1, 2), word_keys, word_values,
                       word_padding, dropout)                                    # (B, P, dim)
        keys, values = (gather_rows(self.neighbour_key_value(x), neighbours) + encoding.pair_key_values) \
            .view(b * p, k, 2, heads, head_dim).permute(2, 0, 3, 1, 4)         # 2 x (B P, H, K, hd)
        found = _attend((self.relate_query(x + read)).view(b * p, heads, 1, head_dim), keys, values,
                        neighbour_padding.reshape(b * p, k), dropout).view(b, p, -1)
        scores = self.score(self.norm(torch.cat([x, read, found], dim=-1))).squeeze(-1)
        return scores.masked_fill(object_padding, float("-inf"))


def reconstruction_nll(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B,) weighted sum over positions of the words' negative log-likelihood; logits (B, L, V), targets (B, L),
    weights (B, L) (0 where a word does not count)."""
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (nll * weights).sum(dim=1)
