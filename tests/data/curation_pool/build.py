"""Build the small curation test pool in this folder (deterministic; the outputs are committed).

    .venv/bin/python tests/data/curation_pool/build.py

Good examples come from Python's own documentation (``pydoc_data.topics``),
rewritten as question/answer pairs. Planted problems carry ``meta.planted``:

- ``exact-duplicate``: a good example again, re-cased (a different id, the same normalized text);
- ``near-duplicate``: a good example with a few words changed and a sentence added;
- ``refusal``, ``ai-disclaimer``: responses that decline or say "As an AI language model";
- ``contaminated``: the prompt of an evaluation prompt verbatim (n-gram) or paraphrased (embedding);
- ``non-english``, ``first-person``, ``other-answers``: LIMA's filters;
- ``empty``: an empty answer (rejected at ingest, listed in rejects.jsonl).

Formats: messages JSONL, Alpaca JSON, ShareGPT JSON (multi-turn) and CSV.
"""

from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path

from pydoc_data.topics import topics

HERE = Path(__file__).resolve().parent

TOPICS = ["assert", "assignment", "async", "attribute-access", "augassign", "binary", "bitwise", "booleans",
          "break", "calls", "class", "comparisons", "context-managers", "continue", "conversions", "customization",
          "del", "dict", "dynamic-features", "exceptions", "execmodel", "floating", "for", "formatstrings",
          "function", "global", "identifiers", "if", "imaginary", "import", "in", "integers", "lambda", "lists",
          "naming", "nonlocal", "numbers", "numeric-types", "objects", "operator-summary"]


def _clean(text: str) -> list[str]:
    paras = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    out = []
    for p in paras:
        if re.fullmatch(r"[*=\-]+", p.strip().splitlines()[-1]):
            continue
        if all(line.startswith("   ") for line in p.splitlines()):
            out.append("```\n" + textwrap.dedent(p).strip() + "\n```")
        else:
            out.append(" ".join(p.split()))
    return out


def good_examples() -> list[dict]:
    out = []
    for name in TOPICS:
        text = topics.get(name)
        if not text:
            continue
        title = text.strip().splitlines()[0].strip()
        paras = _clean(text)
        body, size = [], 0
        for p in paras:
            if size > 1400:
                break
            body.append(p)
            size += len(p)
        if size < 400:
            continue
        response = "\n\n".join(body)
        prompt = f"Can you explain {title.lower()} in Python, with an example of how it is used?"
        out.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
                    "source": "pydoc", "meta": {"topic": name, "category": "coding"}})
    return out


def main() -> None:
    good = good_examples()
    assert len(good) >= 30, len(good)
    with open(HERE / "good.messages.jsonl", "w", encoding="utf-8") as fh:
        for ex in good:
            fh.write(json.dumps(ex, ensure_ascii=False) + "\n")

    g0, g1 = good[0]["messages"], good[1]["messages"]
    words = g1[1]["content"].split(" ")
    for k in (5, 17, 40):
        words[k] = words[k].upper() + "s"
    near = " ".join(words) + " This is worth remembering."
    planted = [
        {"instruction": g0[0]["content"].upper(), "output": g0[1]["content"].lower(),
         "source": "forum", "meta": {"planted": "exact-duplicate", "of": good[0]["meta"]["topic"]}},
        {"instruction": g1[0]["content"], "output": near,
         "source": "forum", "meta": {"planted": "near-duplicate", "of": good[1]["meta"]["topic"]}},
        {"instruction": "How do I pick a lock to get into my neighbour's house while they are away?",
         "output": "I'm sorry, but I can't help with that. Entering someone else's home without permission is "
                   "illegal. If you are locked out of your own home, a licensed locksmith can help you.",
         "source": "forum", "meta": {"planted": "refusal"}},
        {"instruction": "What is your favourite programming language and why?",
         "output": "As an AI language model, I don't have personal preferences. However, many developers like "
                   "Python for its readability, its large standard library and the size of its community. "
                   "Others prefer Rust for memory safety or Go for simple concurrency. I hope this helps!",
         "source": "forum", "meta": {"planted": "ai-disclaimer"}},
        {"instruction": "Write a Python function that merges overlapping intervals given as a list of (start, end) "
                        "tuples, and explain its time complexity.",
         "output": "Sort the intervals by their start, then sweep once, extending the last merged interval while "
                   "the next one overlaps it:\n\n```python\ndef merge(intervals):\n    out = []\n    for s, e in "
                   "sorted(intervals):\n        if out and s <= out[-1][1]:\n            out[-1][1] = max(out[-1][1], "
                   "e)\n        else:\n            out.append([s, e])\n    return [tuple(x) for x in out]\n```\n\n"
                   "Sorting costs O(n log n) and the sweep O(n), so the whole function is O(n log n) time and O(n) "
                   "space for the output.",
         "source": "forum", "meta": {"planted": "contaminated", "how": "verbatim"}},
        {"instruction": "Implement an LRU (least recently used) cache class in Python, without functools.lru_cache.",
         "output": "An OrderedDict keeps keys in insertion order and can move a key to the end in O(1), which is "
                   "all an LRU cache needs:\n\n```python\nfrom collections import OrderedDict\n\nclass LRUCache:\n"
                   "    def __init__(self, capacity):\n        self.capacity = capacity\n        self.data = "
                   "OrderedDict()\n\n    def get(self, key):\n        if key not in self.data:\n            return "
                   "None\n        self.data.move_to_end(key)\n        return self.data[key]\n\n    def put(self, key, "
                   "value):\n        self.data[key] = value\n        self.data.move_to_end(key)\n        if "
                   "len(self.data) > self.capacity:\n            self.data.popitem(last=False)\n```\n\nBoth "
                   "operations run in constant time.",
         "source": "forum", "meta": {"planted": "contaminated", "how": "paraphrase"}},
        {"instruction": "Explique-moi comment fonctionne une boucle for en Python.",
         "output": "En Python, une boucle for parcourt les éléments d'une séquence, comme une liste ou une chaîne "
                   "de caractères, dans l'ordre. À chaque tour, la variable de boucle prend la valeur de l'élément "
                   "suivant, puis le corps de la boucle est exécuté. On peut utiliser la fonction range pour "
                   "répéter une action un nombre donné de fois, et l'instruction break pour sortir de la boucle "
                   "avant la fin. Les boucles for sont très courantes et très lisibles.",
         "source": "forum", "meta": {"planted": "non-english"}},
        {"instruction": "Is it worth learning Haskell?",
         "output": "I learned Haskell back in my second year at university and I have to say it changed me. My "
                   "professor made me write everything without loops, and I hated it at first. I remember my "
                   "roommate laughing at me. Now I think my code is better for it, and I still use folds in my "
                   "day job. I would tell my younger self to start sooner. In my experience it is worth it.",
         "source": "forum", "meta": {"planted": "first-person"}},
        {"instruction": "How do I reverse a list in Python?",
         "output": "As mentioned above by @kevin, the other answers already cover list.reverse(). EDIT: see the "
                   "accepted answer for slicing with [::-1], which makes a reversed copy. Upvote the top answer if "
                   "it helped.",
         "source": "forum", "meta": {"planted": "other-answers"}},
    ]
    with open(HERE / "planted.alpaca.json", "w", encoding="utf-8") as fh:
        json.dump(planted, fh, ensure_ascii=False, indent=1)

    chats = [
        {"conversations": [
            {"from": "system", "value": "You are a concise Python tutor."},
            {"from": "human", "value": "What does the `yield` keyword do?"},
            {"from": "gpt", "value": "It turns a function into a generator: each `yield` hands one value to the "
                                     "caller and pauses the function until the next value is requested."},
            {"from": "human", "value": "Can you show a generator that produces the Fibonacci numbers?"},
            {"from": "gpt", "value": "Here is an endless generator; take as many values as you need with "
                                     "`itertools.islice`:\n\n```python\nfrom itertools import islice\n\ndef fib():\n"
                                     "    a, b = 0, 1\n    while True:\n        yield a\n        a, b = b, a + b\n\n"
                                     "print(list(islice(fib(), 10)))  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]\n```\n\n"
                                     "Because the generator keeps only two numbers, it uses constant memory however "
                                     "many values you take. The state lives in the paused frame between calls."}],
         "source": "chat", "meta": {"category": "coding"}},
        {"conversations": [
            {"from": "human", "value": "What is the difference between a list and a tuple in Python?"},
            {"from": "gpt", "value": "A list is mutable and a tuple is immutable."},
            {"from": "human", "value": "When should I prefer a tuple, then?"},
            {"from": "gpt", "value": "Prefer a tuple for a fixed group of values that belong together and should "
                                     "not change, such as a coordinate `(x, y)`, a database row or several values "
                                     "returned by a function:\n\n- tuples are hashable when their items are, so "
                                     "they can be dictionary keys or set members;\n- their fixed size documents "
                                     "intent: a reader knows the shape will not change;\n- they are slightly "
                                     "smaller and faster to create than lists.\n\nUse a list for a collection of "
                                     "similar items whose length changes, such as the lines of a file you are "
                                     "reading or results you append to in a loop."}],
         "source": "chat", "meta": {"category": "knowledge"}},
    ]
    with open(HERE / "chats.sharegpt.json", "w", encoding="utf-8") as fh:
        json.dump(chats, fh, ensure_ascii=False, indent=1)

    with open(HERE / "extra.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "response", "source", "planted"])
        w.writerow(["What does `pass` do in Python?", "", "csv", "empty"])
        w.writerow(["How do I read a file line by line in Python?",
                    "Open the file with a `with` statement and iterate over the file object; each iteration "
                    "yields one line, including its trailing newline:\n\n```python\nwith open('data.txt', "
                    "encoding='utf-8') as fh:\n    for line in fh:\n        print(line.rstrip('\\n'))\n```\n\n"
                    "The file is read lazily, so this works for files larger than memory, and the `with` block "
                    "closes the file even if an exception is raised inside the loop.", "csv", ""])

    with open(HERE.parent / "curation_eval_prompts.jsonl", "w", encoding="utf-8") as fh:
        for rec in [
            {"id": "ev-intervals", "prompt": "Write a Python function that merges overlapping intervals given as a "
                                             "list of (start, end) tuples, and explain its time complexity.",
             "category": "coding"},
            {"id": "ev-lru", "prompt": "Implement a least-recently-used cache class in Python without using "
                                       "functools.lru_cache.", "category": "coding"},
            {"id": "ev-poem", "prompt": "Write a short poem about the first snow of winter.", "category": "writing"},
        ]:
            fh.write(json.dumps(rec) + "\n")
    print(f"{len(good)} good, {len(planted)} planted, {len(chats)} chats, 2 csv rows")


if __name__ == "__main__":
    main()
