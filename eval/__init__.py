"""eval: pairwise evaluation and single-answer grading with LLM and human judges.

``python -m eval {generate,judge,report,run}`` (see ``eval/README.md``). The judges, their
backends, the runner and the cache live in :mod:`judging`, which ``curation`` also uses for its
pointwise quality ratings (:func:`judging.rate_many`) and ``eval generate --backend openai``
for generation. Modules: ``generate``, ``judge``, ``human`` (Argilla A/B), ``stats``,
``headline`` (the report's first sentences), ``grades`` (MT-Bench single-answer), ``leaderboard``
(N systems, Bradley–Terry), ``charts``, ``report``, ``run``, ``files``, ``config``, ``cli``.
"""
