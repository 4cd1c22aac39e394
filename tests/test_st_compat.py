"""sentence-transformers names: a retrieval snippet written for sentence-transformers runs unchanged on
a workbench model and returns the same kinds of objects; the workbench's own names still work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_gen

from workbench.core.config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION

# As written for sentence-transformers 5 (its README's retrieval example, plus the keywords users pass).
SNIPPET = """
from sentence_transformers import util

queries = ["Which planet is known as the Red Planet?", "How do plants make food?"]
documents = [
    "Venus is often called Earth's twin because of its similar size and proximity.",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Plants use photosynthesis to turn light, water and carbon dioxide into sugar.",
]
query_embeddings = model.encode_query(queries)
document_embeddings = model.encode_document(documents, batch_size=2, show_progress_bar=False)
similarities = model.similarity(query_embeddings, document_embeddings)
best = similarities.argmax(dim=1).tolist()

q = model.encode_query(queries, convert_to_tensor=True, normalize_embeddings=True)
d = model.encode_document(documents, convert_to_tensor=True, normalize_embeddings=True)
hits = util.semantic_search(q, d, top_k=2)
one = model.encode("A single sentence", prompt="query: ")
as_list = model.encode(documents, convert_to_numpy=False)
small = model.encode(documents, truncate_dim=8, normalize_embeddings=True)
binary = model.encode(documents, precision="ubinary")
pairwise = model.similarity_pairwise(query_embeddings, document_embeddings[:2])
"""


def run_snippet(model) -> dict:
    scope: dict = {"model": model}
    exec(SNIPPET, scope)
    return scope


def kind(value) -> tuple:
    """What a result is: container type, dimensions and dtype kind (float, unsigned, ...)."""
    if isinstance(value, list):
        return ("list", len(value), *kind(value[0]))
    if isinstance(value, np.ndarray):
        return ("ndarray", value.ndim, value.dtype.kind)
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dim(), "f" if value.is_floating_point() else "i")
    return (type(value).__name__,)


@pytest.fixture(scope="module")
def reference() -> dict:
    """The snippet on a real sentence-transformers model (the packaged MiniLM teacher)."""
    from sentence_transformers import SentenceTransformer

    from workbench.core.registry import TEACHERS
    from workbench.core.teacher import _packaged_dir

    return run_snippet(SentenceTransformer(str(_packaged_dir(TEACHERS["minilm"])), device="cpu"))


def test_retrieval_snippet_runs_unchanged(tiny_dirs, reference) -> None:
    gen = tiny_gen(tiny_dirs)
    ours = run_snippet(gen)
    for name in ("query_embeddings", "document_embeddings", "similarities", "q", "d", "one", "as_list"):
        assert kind(ours[name]) == kind(reference[name]), name
    for name in ("small", "binary", "pairwise"):
        assert kind(ours[name]) == kind(reference[name]), name
    assert ours["query_embeddings"].shape == (2, 16) and ours["one"].shape == (16,)
    assert ours["small"].shape == (3, 8) and np.allclose(np.linalg.norm(ours["small"], axis=1), 1, atol=1e-5)
    assert ours["binary"].dtype == reference["binary"].dtype == np.uint8 and ours["binary"].shape == (3, 2)
    assert ours["similarities"].shape == (2, 3) and ours["pairwise"].shape == (2,)
    assert [len(h) for h in ours["hits"]] == [2, 2] and set(ours["hits"][0][0]) == {"corpus_id", "score"}


def test_prompts_match_the_workbench_instructions(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs)
    texts = ["Where is Paris?", "How do I bake bread?"]
    q = gen.encode_query(texts)
    assert isinstance(q, np.ndarray) and q.dtype == np.float32
    np.testing.assert_allclose(q, gen.encode_queries(texts).numpy(), atol=1e-6)
    np.testing.assert_allclose(gen.encode_document(texts), gen.encode_documents(texts).numpy(), atol=1e-6)
    assert gen.prompts == {"query": f"{QUERY_INSTRUCTION} ", "document": f"{DOCUMENT_INSTRUCTION} "}
    by_prompt = gen.encode(texts, prompt=gen.prompts["query"], convert_to_tensor=True)
    torch.testing.assert_close(by_prompt, gen.embed(texts, instruction=QUERY_INSTRUCTION))
    torch.testing.assert_close(gen.encode(texts, prompt_name="document", convert_to_tensor=True),
                               gen.encode_documents(texts))  # fmt: skip
    # the 0.2 keywords still work, and the similarity of numpy and torch inputs is the same matrix
    legacy = gen.encode(texts, instruction=QUERY_INSTRUCTION, normalize=True, show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(legacy, axis=1), 1, atol=1e-5)
    torch.testing.assert_close(gen.similarity(q, q), gen.similarity(torch.from_numpy(q), q))
    assert gen.get_sentence_embedding_dimension() == 16 and gen.similarity_fn_name == "cosine"
    assert gen.encode([]).shape == (0,)


def test_bad_options_are_refused(tiny_dirs) -> None:
    from workbench.core.errors import WorkbenchError

    gen = tiny_gen(tiny_dirs)
    with pytest.raises(ValueError, match="Prompt name 'passage' not found"):
        gen.encode(["x"], prompt_name="passage")
    with pytest.raises(WorkbenchError, match="no token embeddings"):
        gen.encode(["x"], output_value="token_embeddings")
    with pytest.raises(TypeError, match="unexpected keyword"):
        gen.encode(["x"], pooling="mean")
    with pytest.raises(WorkbenchError, match="both instruction"):
        gen.encode(["x"], instruction="a", prompt="b")
