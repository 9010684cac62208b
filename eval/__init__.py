"""eval: pairwise evaluation with LLM and human judges.

``python -m eval {generate,judge,report,run}`` (see ``eval/README.md``). The judges, their
backends and the cache live in :mod:`judging`, which ``curation`` also uses for its
pointwise quality ratings (:func:`judging.rate_many`).
"""
