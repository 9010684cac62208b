"""Human judges: a blind A/B dataset in Argilla, pushed and pulled with ``python -m eval judge --backend human``.

    python -m eval judge --backend human push --a cand.jsonl --b ref.jsonl --dataset eval-ab --overlap 2
    # curators vote in the Argilla UI (the curation workspace: python -m curation serve)
    python -m eval judge --backend human pull --dataset eval-ab --out judgments-human.jsonl

Each record shows the prompt and two responses, "Response 1" and "Response 2".
Which system wrote which is hidden: the order is randomized per pair (seeded)
and the swap is kept in metadata that annotators do not see. The question
is LIMA's: Response 1 / Response 2 is significantly better, or neither is.
``--overlap`` sets Argilla's task distribution (``min_submitted``) so that
several people vote on each pair and their agreement can be measured.

``pull`` un-blinds each submitted vote into A's view (win/tie/loss), keeps
every vote with its annotator and rationale, and gives the pair the majority
verdict (no majority: tie).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

QUESTION = "preference"
LABELS = {
    "1": "Response 1 is significantly better",
    "tie": "Neither is significantly better",
    "2": "Response 2 is significantly better",
}
GUIDELINES = """\
# Which response is better?

Each record shows a request and two responses written by two different AI assistants.
Imagine that you have a super-intelligent AI assistant and that you need help with this request.
**Which response best satisfies your needs?**

- **Response 1 is significantly better** / **Response 2 is significantly better**: one of them is
  clearly more helpful, more correct, or better written for you.
- **Neither is significantly better**: they are about as good (or as bad) as each other.

Judge helpfulness and correctness first, then clarity and style. Do not let length alone decide:
a longer response is better only if the extra content helps. The order of the two responses is
random, and which assistant wrote which is hidden on purpose. Add a short reason if you can.
"""


def pair_key(a: dict, b: dict) -> str:
    """Stable record id for one (prompt, A system, B system) pair."""
    raw = "\x00".join([a["id"], a.get("generator") or "", b.get("generator") or ""])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def is_swapped(key: str, seed: int) -> bool:
    """Whether Response 1 shows B (decided per pair, reproducibly)."""
    return random.Random(f"{seed}:{key}").random() < 0.5


def default_dataset_name(a_rows: list[dict], b_rows: list[dict]) -> str:
    def slug(s: str) -> str:
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in s)[:40]

    return f"eval-ab-{slug(a_rows[0]['generator'])}-vs-{slug(b_rows[0]['generator'])}"


def _settings(overlap: int):
    import argilla as rg

    hidden = dict(visible_for_annotators=False)
    return rg.Settings(
        guidelines=GUIDELINES,
        fields=[
            rg.TextField(name="prompt", title="Request", use_markdown=True),
            rg.TextField(name="response_1", title="Response 1", use_markdown=True),
            rg.TextField(name="response_2", title="Response 2", use_markdown=True),
        ],
        questions=[
            rg.LabelQuestion(name=QUESTION, title="Which response best satisfies your needs?", labels=LABELS),
            rg.TextQuestion(name="rationale", title="Why? (optional)", required=False, use_markdown=False),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="category", title="Category"),
            rg.TermsMetadataProperty(name="prompt_id", title="Prompt id", **hidden),
            rg.TermsMetadataProperty(name="swapped", title="B shown first", **hidden),
            rg.TermsMetadataProperty(name="a_generator", title="A", **hidden),
            rg.TermsMetadataProperty(name="b_generator", title="B", **hidden),
        ],
        distribution=rg.TaskDistribution(min_submitted=max(1, int(overlap))),
    )


def resolve_workspace(client, name: str = "") -> str:
    names = [w.name for w in client.workspaces]
    if name:
        if name not in names:
            raise ValueError(f"Argilla workspace {name!r} not found (there are: {', '.join(names) or 'none'})")
        return name
    if not names:
        raise ValueError("the Argilla server has no workspace; create one (python -m curation serve makes 'curation')")
    return "curation" if "curation" in names else names[0]


def push(pairs: list[tuple[dict, dict]], *, client, dataset: str, workspace: str = "", overlap: int = 2,
         seed: int = 0) -> dict[str, Any]:
    """Create (or extend) the blind A/B dataset. Re-pushing the same pairs does not duplicate them."""
    import argilla as rg

    ws = resolve_workspace(client, workspace)
    ds = client.datasets(name=dataset, workspace=ws)
    created = ds is None
    if created:
        ds = rg.Dataset(name=dataset, workspace=ws, settings=_settings(overlap), client=client).create()
    elif QUESTION not in [q.name for q in ds.settings.questions]:
        raise ValueError(f"Argilla dataset {dataset!r} exists and is not an eval A/B dataset; choose another --dataset")
    records, swaps = [], 0
    for a, b in pairs:
        key = pair_key(a, b)
        swapped = is_swapped(key, seed)
        swaps += swapped
        first, second = (b, a) if swapped else (a, b)
        records.append(rg.Record(
            id=key,
            fields={"prompt": a["prompt"], "response_1": first["output"] or "(empty)", "response_2": second["output"] or "(empty)"},
            metadata={"category": a.get("category") or "general", "prompt_id": a["id"],
                      "swapped": "yes" if swapped else "no",
                      "a_generator": a.get("generator") or "A", "b_generator": b.get("generator") or "B"},
        ))
    ds.records.log(records)
    return {"dataset": dataset, "workspace": ws, "records": len(records), "swapped": swaps, "created": created,
            "overlap": ds.settings.distribution.min_submitted}


def _vote_from_a(raw: str, swapped: bool) -> str:
    """Un-blind one vote.

    >>> _vote_from_a("1", swapped=False), _vote_from_a("1", swapped=True), _vote_from_a("tie", True)
    ('win', 'loss', 'tie')
    """
    if raw == "tie":
        return "tie"
    first_is_a = not swapped
    return "win" if (raw == "1") == first_is_a else "loss"


def majority(votes: list[str]) -> str | None:
    """The most common vote; no single most common one → tie.

    >>> majority(["win", "win", "loss"]), majority(["win", "loss"]), majority([])
    ('win', 'tie', None)
    """
    if not votes:
        return None
    (top, n), *rest = Counter(votes).most_common() + [(None, 0)]
    return top if n > rest[0][1] else "tie"


def _submitted(response) -> bool:
    return str(getattr(response.status, "value", response.status)) == "submitted"


def pull(*, client, dataset: str, workspace: str = "") -> list[dict]:
    """One judgment row per record (see eval/README.md), un-blinded, with every submitted vote."""
    ws = resolve_workspace(client, workspace)
    ds = client.datasets(name=dataset, workspace=ws)
    if ds is None:
        raise ValueError(f"no Argilla dataset {dataset!r} in workspace {ws!r}; push it first")
    usernames = {str(u.id): u.username for u in client.users}
    rows = []
    for record in ds.records(with_responses=True):
        meta = record.metadata
        swapped = meta.get("swapped") == "yes"
        fields = record.fields
        out_a, out_b = (fields["response_2"], fields["response_1"]) if swapped else (fields["response_1"], fields["response_2"])
        rationales = {str(r.user_id): r.value for r in (record.responses["rationale"] or []) if _submitted(r)}
        votes = []
        for resp in record.responses[QUESTION] or []:
            if not _submitted(resp):
                continue
            uid = str(resp.user_id)
            votes.append({
                "annotator": usernames.get(uid, uid),
                "raw": resp.value,
                "shown": LABELS.get(resp.value, resp.value),
                "verdict": _vote_from_a(resp.value, swapped),
                "rationale": rationales.get(uid) or "",
            })
        verdict = majority([v["verdict"] for v in votes])
        rows.append({
            "id": meta.get("prompt_id") or record.id,
            "record_id": record.id,
            "category": meta.get("category") or "general",
            "prompt": fields["prompt"],
            "judge": "human",
            "judge_kind": "human",
            "backend": f"argilla:{ws}/{dataset}",
            "a": {"generator": meta.get("a_generator")},
            "b": {"generator": meta.get("b_generator")},
            "output_a": out_a,
            "output_b": out_b,
            "swapped": swapped,
            "verdict": verdict,
            "votes": votes,
            "consistent": None,
            "rationale": " / ".join(v["rationale"] for v in votes if v["rationale"]),
            "tokens": {"prompt": 0, "completion": 0},
            "cost": 0.0,
            "parse_failures": 0,
            "error": None if votes else "no submitted votes yet",
        })
    return rows
