"""The synthetic corpus of ``benchmark retrieval --synthetic``: shaped as the benchmark says,
and its default vectors look like text embeddings where the worst case does not."""

from __future__ import annotations

import numpy as np
import pytest

from inference.benchmarks.retrieval_synthetic import (
    CHUNKS_PER_DOCUMENT,
    DEPARTMENTS,
    generate,
    neighbourhood,
)


@pytest.mark.parametrize("structure", ["documents", "isotropic"])
def test_chunks_come_in_documents_of_one_department_with_one_holding_one_percent(
    structure: str,
) -> None:
    corpus = generate(5000, seed=3, structure=structure)
    assert corpus.vectors.shape == (5000, 384)
    assert np.allclose(np.linalg.norm(corpus.vectors, axis=1), 1.0, atol=1e-5)
    assert len(corpus.texts) == 5000 and all(corpus.texts)
    documents = np.unique(corpus.documents)
    for document in documents:
        members = corpus.departments[corpus.documents == document]
        assert len(members) <= CHUNKS_PER_DOCUMENT and len(set(members.tolist())) == 1
    assert set(corpus.departments.tolist()) == set(range(DEPARTMENTS))
    assert abs((corpus.departments == 0).mean() - 0.01) < 0.006


def test_the_default_vectors_have_the_neighbourhoods_of_text_embeddings() -> None:
    # all-MiniLM-L6-v2 on real text (docs/retrieval.md): local dimension 17 to 18, the
    # nearest neighbour at cosine 0.68 to 0.70, the 10th at 0.52 to 0.56.
    documents = neighbourhood(generate(5000, seed=3).vectors)
    assert 12 <= documents["local_dimension"] <= 26
    assert 0.6 <= documents["cosine_1st"] <= 0.8 and 0.45 <= documents["cosine_10th"] <= 0.65
    # The worst case spreads its noise over every direction: higher dimension, and the
    # nearest neighbours hardly nearer than the 10th.
    isotropic = neighbourhood(generate(5000, seed=3, structure="isotropic").vectors)
    assert isotropic["local_dimension"] > documents["local_dimension"] + 5
    assert isotropic["cosine_1st"] - isotropic["cosine_10th"] < 0.1
