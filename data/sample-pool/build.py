"""Build the sample candidate pool in this folder, deterministically.

    python data/sample-pool/build.py            # (re)write the pool files
    python data/sample-pool/build.py --check    # read them back with curation.schema and print counts

Text comes from what ships with Python (``pydoc_data.topics``, stdlib
docstrings, examples run here and their real output) and from hand-written
text in ``handwritten.py``. Quality varies on purpose; every deliberately bad
example carries ``meta.quality_note`` = ``"<kind>: <why>"`` (kinds in
``PLANTED_KINDS``). The invalid records for ``--skip-invalid`` go to ``bad/``,
outside the default pool glob ``data/sample-pool/*.{jsonl,json,csv,parquet}``.

Stdlib and pyarrow only. The output depends on the Python version's docs and
docstrings; the committed files were built with Python 3.11 (see README.md).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import inspect
import io
import json
import re
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVAL_PROMPTS = HERE.parent / "eval-prompts" / "prompts.jsonl"
BUILT_WITH = (3, 11)

sys.path.insert(0, str(HERE))
import handwritten as hw  # noqa: E402  (the hand-written text lives beside this script)

PLANTED_KINDS = ("exact-duplicate", "near-duplicate", "refusal", "boilerplate", "first-person",
                 "reference", "too-short", "non-english", "contaminated")

FILES = {
    "messages": "pydoc-topics.messages.jsonl",
    "sharegpt": "stdlib-functions.sharegpt.json",
    "csv": "stdlib-sessions.alpaca.csv",
    "lima": "handwritten.lima.jsonl",
    "parquet": "forum-answers.parquet",
    "alpaca_json": "tasks.alpaca.json",
}
BAD_FILE = Path("bad") / "invalid.jsonl"

TUTOR = "You are a patient Python tutor. Prefer short, runnable examples."


def note(kind: str, why: str) -> dict:
    assert kind in PLANTED_KINDS, kind
    return {"quality_note": f"{kind}: {why}"}


# --------------------------------------------------------------------------- pydoc topics

_HEADING = re.compile(r"^(.+)\n(=+|-+|\*+)$")
_QUOTED = re.compile(r'"([^"\n]+?)"')
_FOOTREF = re.compile(r" ?\[\d+\]")
_SIGNATURE = re.compile(r"^(class )?[\w.]+\(.*\)$")
_ADMONITIONS = {"Note:", "Warning:", "See also:", "Caution:", "Important:"}


def _is_code(chunk: str) -> bool:
    lines = chunk.split("\n")
    if not all(line.startswith("   ") for line in lines):
        return False
    body = textwrap.dedent(chunk).strip()
    if "::=" in body or body.startswith(">>>"):
        return True
    if body in _ADMONITIONS or body.startswith(("* ", "- ")):
        return False
    words = body.split()
    prose_start = body[:1].isupper() or body[:1] in "\"“*(" or re.match(r"\d+\.", body)
    return not (prose_start and len(words) >= 4 and body[-1] in ".:)")


def _inline(text: str) -> str:
    return _FOOTREF.sub("", _QUOTED.sub(r"`\1`", text))


def clean_topic(text: str, limit: int) -> tuple[str, str]:
    """Turn a pydoc topic into (title, Markdown answer) of at most about ``limit`` characters."""
    text = text.split("-[ Footnotes ]-")[0]
    head, _, body = text.partition("\n")
    body = body.lstrip("*\n")
    chunks = [c.rstrip() for c in re.split(r"\n[ \t]*\n", body) if c.strip()]
    out: list[str] = []
    code: list[str] = []

    def flush_code():
        if code:
            out.append("```\n" + textwrap.dedent("\n\n".join(code)).strip("\n") + "\n```")
            code.clear()

    for chunk in chunks:
        m = _HEADING.match(chunk)
        if m:
            flush_code()
            out.append("### " + _inline(m.group(1).strip()))
        elif chunk.startswith("+-") or all(_SIGNATURE.match(line) for line in chunk.split("\n")):
            flush_code()
            out.append("```\n" + chunk + "\n```")
        elif _is_code(chunk):
            code.append(chunk)
        else:
            flush_code()
            para = " ".join(line.strip() for line in chunk.split("\n"))
            para = re.sub(r"^-\[ (.+) \]-$", r"**\1**", para)
            out.append(_inline(para))
    flush_code()
    kept: list[str] = []
    size = 0
    for part in out:
        if kept and size + len(part) > limit:
            break
        kept.append(part)
        size += len(part) + 2
    while kept and (kept[-1].endswith(":") or kept[-1].startswith("###")):
        kept.pop()  # never end on an introduction whose code was cut
    title = head.strip()
    return title, "\n\n".join(kept)


def topic_question(title: str, i: int) -> str:
    stmt = re.fullmatch(r'The "([\w ]+)" statement', title)
    if stmt:
        return [f"Explain how Python's `{stmt.group(1)}` statement works.",
                f"How does the `{stmt.group(1)}` statement behave in Python? Please include the exact rules."][i % 2]
    t = _QUOTED.sub(r"`\1`", title)
    t = " ".join(w if w.startswith("`") else w.lower() for w in t.split(" ")).replace("python", "Python")
    templates = ["Explain {t} in Python.",
                 "Can you walk me through {t} in Python?",
                 "What should I know about {t} in Python? Please be thorough.",
                 "Give me an overview of {t} in Python, with examples where they help."]
    return templates[i % len(templates)].format(t=t)


def pydoc_examples() -> list[dict]:
    from pydoc_data.topics import topics

    examples, seen_titles = [], set()
    for i, key in enumerate(sorted(topics)):
        # every 6th topic keeps only its first paragraph: a terse, mediocre answer
        limit = 300 if i % 6 == 5 else 3500
        title, answer = clean_topic(topics[key], limit)
        if title in seen_titles:  # "else" and "if" share one text
            continue
        seen_titles.add(title)
        messages = [{"role": "user", "content": topic_question(title, i)},
                    {"role": "assistant", "content": answer}]
        if i % 10 == 3:
            messages.insert(0, {"role": "system", "content": TUTOR})
        examples.append({"messages": messages, "source": "pydoc-topics",
                         "meta": {"origin": f"pydoc_data.topics[{key!r}]"}})
    return examples


# --------------------------------------------------------------------------- stdlib docstrings

# (dotted name, REPL inputs). Each example runs here; its real output goes into the answer.
STDLIB = [
    ("json.dumps", ["import json", "json.dumps({'name': 'Ada', 'tags': ['math', 'engines']})",
                    "print(json.dumps({'b': 1, 'a': [1, 2]}, sort_keys=True, indent=2))"]),
    ("json.loads", ["import json", "json.loads('{\"x\": [1, 2.5, null, true]}')"]),
    ("json.dump", ["import io, json", "buf = io.StringIO()", "json.dump({'ok': True}, buf)", "buf.getvalue()"]),
    ("re.sub", ["import re", "re.sub(r'\\s+', ' ', 'too   many    spaces')",
                "re.sub(r'(\\w+)@(\\w+)', r'\\2 at \\1', 'ada@example')"]),
    ("re.findall", ["import re", "re.findall(r'\\d+', 'order 66, aisle 7, shelf 12')",
                    "re.findall(r'(\\w+)=(\\d+)', 'a=1, b=22')"]),
    ("re.split", ["import re", "re.split(r'[;,]\\s*', 'a, b;c,  d')"]),
    ("re.fullmatch", ["import re", "bool(re.fullmatch(r'[A-Z]{3}-\\d{4}', 'ABC-1234'))",
                      "bool(re.fullmatch(r'[A-Z]{3}-\\d{4}', 'ABC-12345'))"]),
    ("re.escape", ["import re", "re.escape('1+1=2?')"]),
    ("re.compile", ["import re", "date = re.compile(r'(?P<year>\\d{4})-(?P<month>\\d{2})')",
                    "date.search('released 2023-07').groupdict()"]),
    ("re.match", ["import re", "re.match(r'\\d+', 'abc123') is None", "re.match(r'\\d+', '123abc').group()"]),
    ("re.finditer", ["import re", "[(m.start(), m.group()) for m in re.finditer(r'o+', 'foo boo moo')]"]),
    ("itertools.accumulate", ["from itertools import accumulate", "list(accumulate([3, 1, 4, 1, 5]))",
                              "list(accumulate([3, 1, 4, 1, 5], max))"]),
    ("itertools.chain", ["from itertools import chain", "list(chain('ab', [1, 2], (None,)))",
                         "list(chain.from_iterable([[1, 2], [3]]))"]),
    ("itertools.groupby", ["from itertools import groupby", "[(k, len(list(g))) for k, g in groupby('aaabccdd')]"]),
    ("itertools.islice", ["from itertools import islice, count", "list(islice(count(10), 3))",
                          "list(islice('abcdefg', 1, None, 2))"]),
    ("itertools.product", ["from itertools import product", "list(product('ab', [0, 1]))"]),
    ("itertools.permutations", ["from itertools import permutations",
                                "[''.join(p) for p in permutations('abc', 2)]"]),
    ("itertools.combinations", ["from itertools import combinations", "list(combinations([1, 2, 3, 4], 2))"]),
    ("itertools.combinations_with_replacement", ["from itertools import combinations_with_replacement",
                                                 "list(combinations_with_replacement('ab', 2))"]),
    ("itertools.zip_longest", ["from itertools import zip_longest", "list(zip_longest('abc', [1], fillvalue='-'))"]),
    ("itertools.pairwise", ["from itertools import pairwise", "list(pairwise([1, 4, 9, 16]))"]),
    ("itertools.starmap", ["from itertools import starmap", "list(starmap(pow, [(2, 5), (3, 2)]))"]),
    ("itertools.takewhile", ["from itertools import takewhile", "list(takewhile(lambda x: x < 5, [1, 4, 6, 4, 1]))"]),
    ("itertools.dropwhile", ["from itertools import dropwhile", "list(dropwhile(lambda x: x < 5, [1, 4, 6, 4, 1]))"]),
    ("itertools.cycle", ["from itertools import cycle, islice", "list(islice(cycle('RGB'), 7))"]),
    ("itertools.repeat", ["from itertools import repeat", "list(map(pow, range(5), repeat(2)))"]),
    ("itertools.tee", ["from itertools import tee", "a, b = tee([1, 2, 3])", "list(a), list(b)"]),
    ("itertools.compress", ["from itertools import compress", "list(compress('ABCDEF', [1, 0, 1, 0, 1, 1]))"]),
    ("itertools.filterfalse", ["from itertools import filterfalse",
                               "list(filterfalse(lambda n: n % 2, range(10)))"]),
    ("collections.Counter", ["from collections import Counter", "c = Counter('mississippi')", "c.most_common(2)",
                             "c['s'], c['z']"]),
    ("collections.defaultdict", ["from collections import defaultdict", "groups = defaultdict(list)",
                                 "for word in ['apple', 'bean', 'avocado']:\n    groups[word[0]].append(word)",
                                 "dict(groups)"]),
    ("collections.deque", ["from collections import deque", "d = deque([1, 2, 3], maxlen=3)", "d.append(4)", "d",
                           "d.appendleft(0)", "d"]),
    ("collections.namedtuple", ["from collections import namedtuple", "Point = namedtuple('Point', 'x y')",
                                "p = Point(2, y=5)", "p", "p.x + p.y", "p._replace(x=10)"]),
    ("collections.OrderedDict", ["from collections import OrderedDict", "od = OrderedDict(a=1, b=2, c=3)",
                                 "od.move_to_end('a')", "list(od)", "od.popitem(last=False)"]),
    ("collections.ChainMap", ["from collections import ChainMap", "defaults = {'color': 'red', 'user': 'guest'}",
                              "settings = ChainMap({'user': 'ada'}, defaults)", "settings['user'], settings['color']"]),
    ("functools.reduce", ["from functools import reduce", "reduce(lambda acc, x: acc * x, [1, 2, 3, 4, 5])",
                          "reduce(lambda acc, x: acc + [x * 2], [1, 2], [])"]),
    ("functools.partial", ["from functools import partial", "parse_binary = partial(int, base=2)",
                           "parse_binary('1011')"]),
    ("functools.lru_cache", ["from functools import lru_cache",
                             "@lru_cache(maxsize=None)\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
                             "fib(80)", "fib.cache_info()"]),
    ("functools.wraps", ["from functools import wraps",
                         "def logged(func):\n    @wraps(func)\n    def wrapper(*args, **kwargs):\n"
                         "        print('calling', func.__name__)\n        return func(*args, **kwargs)\n"
                         "    return wrapper",
                         "@logged\ndef add(a, b):\n    \"Add two numbers.\"\n    return a + b",
                         "add(2, 3)", "add.__name__, add.__doc__"]),
    ("functools.total_ordering", ["from functools import total_ordering",
                                  "@total_ordering\nclass Version:\n    def __init__(self, major, minor):\n"
                                  "        self.key = (major, minor)\n    def __eq__(self, other):\n"
                                  "        return self.key == other.key\n    def __lt__(self, other):\n"
                                  "        return self.key < other.key",
                                  "Version(1, 2) >= Version(1, 10)"]),
    ("functools.cmp_to_key", ["from functools import cmp_to_key",
                              "def by_length(a, b):\n    return len(a) - len(b)",
                              "sorted(['pear', 'fig', 'banana'], key=cmp_to_key(by_length))"]),
    ("functools.singledispatch", ["from functools import singledispatch",
                                  "@singledispatch\ndef describe(x):\n    return 'something'",
                                  "@describe.register\ndef _(x: int):\n    return f'the integer {x}'",
                                  "describe(7), describe('seven')"]),
    ("pathlib.PurePath.with_suffix", ["from pathlib import PurePosixPath",
                                      "PurePosixPath('reports/2024/summary.txt').with_suffix('.md')"]),
    ("pathlib.PurePath.relative_to", ["from pathlib import PurePosixPath",
                                      "PurePosixPath('/srv/app/static/logo.png').relative_to('/srv/app')"]),
    ("pathlib.PurePath.joinpath", ["from pathlib import PurePosixPath",
                                   "PurePosixPath('/etc').joinpath('nginx', 'nginx.conf')"]),
    ("pathlib.PurePath.match", ["from pathlib import PurePosixPath", "PurePosixPath('src/pkg/util.py').match('*.py')",
                                "PurePosixPath('src/pkg/util.py').match('tests/*.py')"]),
    ("datetime.date.fromisoformat", ["from datetime import date", "d = date.fromisoformat('2024-02-28')", "d",
                                     "d.isoformat()"]),
    ("datetime.timedelta", ["from datetime import date, timedelta", "date(2024, 2, 28) + timedelta(days=2)",
                            "timedelta(hours=36).days, timedelta(hours=36).seconds"]),
    ("datetime.datetime.strptime", ["from datetime import datetime",
                                    "datetime.strptime('03/07/2024 14:05', '%d/%m/%Y %H:%M')"]),
    ("datetime.date.weekday", ["from datetime import date", "date(2024, 7, 4).weekday()"]),
    ("datetime.date.isocalendar", ["from datetime import date", "date(2024, 12, 30).isocalendar()"]),
    ("csv.reader", ["import csv, io", "rows = csv.reader(io.StringIO('name,qty\\napple,3\\n\"pear, green\",5\\n'))",
                    "list(rows)"]),
    ("csv.writer", ["import csv, io", "buf = io.StringIO()", "w = csv.writer(buf)",
                    "w.writerow(['id', 'note'])", "w.writerow([1, 'says \"hi\", twice'])", "buf.getvalue()"]),
    ("csv.Sniffer", ["import csv", "dialect = csv.Sniffer().sniff('a;b;c\\n1;2;3\\n')",
                     "dialect.delimiter"]),
    ("argparse.ArgumentParser", ["import argparse", "p = argparse.ArgumentParser(prog='tool')",
                                 "_ = p.add_argument('path')", "_ = p.add_argument('--verbose', action='store_true')",
                                 "_ = p.add_argument('--jobs', type=int, default=1)",
                                 "p.parse_args(['in.txt', '--jobs', '4'])"]),
    ("textwrap.wrap", ["import textwrap",
                       "textwrap.wrap('The quick brown fox jumps over the lazy dog', width=15)"]),
    ("textwrap.fill", ["import textwrap",
                       "print(textwrap.fill('Readability counts, and so does line length.', width=20))"]),
    ("textwrap.dedent", ["import textwrap", "textwrap.dedent('\\n    def f():\\n        return 1\\n')"]),
    ("textwrap.indent", ["import textwrap", "print(textwrap.indent('line one\\nline two', '> '))"]),
    ("textwrap.shorten", ["import textwrap",
                          "textwrap.shorten('Curated data beats more data, usually.', width=25)"]),
    ("statistics.mean", ["import statistics", "statistics.mean([2, 4, 4, 4, 5, 5, 7, 9])"]),
    ("statistics.median", ["import statistics", "statistics.median([7, 1, 3])", "statistics.median([7, 1, 3, 5])"]),
    ("statistics.mode", ["import statistics", "statistics.mode(['red', 'blue', 'red', 'green'])"]),
    ("statistics.stdev", ["import statistics", "round(statistics.stdev([2, 4, 4, 4, 5, 5, 7, 9]), 4)"]),
    ("statistics.quantiles", ["import statistics", "statistics.quantiles(range(1, 101), n=4)"]),
    ("statistics.multimode", ["import statistics", "statistics.multimode('aabbbcccd')"]),
    ("string.Template", ["from string import Template", "t = Template('Hello $name, you owe $$${amount}')",
                         "t.substitute(name='Ada', amount=5)", "t.safe_substitute(name='Ada')"]),
    ("string.capwords", ["import string", "string.capwords('the  old   man and the sea')"]),
    ("heapq.heappush", ["import heapq", "h = []", "for x in [5, 1, 4, 2]:\n    heapq.heappush(h, x)",
                        "[heapq.heappop(h) for _ in range(len(h))]"]),
    ("heapq.nlargest", ["import heapq",
                        "heapq.nlargest(2, [('ann', 91), ('bo', 78), ('cy', 85)], key=lambda r: r[1])"]),
    ("heapq.merge", ["import heapq", "list(heapq.merge([1, 4, 9], [2, 3, 10]))"]),
    ("bisect.bisect_left", ["import bisect", "grades = [60, 70, 80, 90]", "bisect.bisect_left(grades, 75)",
                            "bisect.bisect_left(grades, 80)"]),
    ("bisect.insort", ["import bisect", "xs = [1, 3, 7]", "bisect.insort(xs, 5)", "xs"]),
    ("operator.itemgetter", ["from operator import itemgetter", "rows = [('b', 2), ('a', 3), ('c', 1)]",
                             "sorted(rows, key=itemgetter(1))", "itemgetter(0, 1)('xyz')"]),
    ("operator.attrgetter", ["from operator import attrgetter", "import datetime",
                             "attrgetter('year', 'month')(datetime.date(2024, 5, 17))"]),
    ("math.isclose", ["import math", "0.1 + 0.2 == 0.3", "math.isclose(0.1 + 0.2, 0.3)"]),
    ("math.gcd", ["import math", "math.gcd(84, 36)", "math.gcd(12, 18, 27)"]),
    ("math.comb", ["import math", "math.comb(10, 3)"]),
    ("math.prod", ["import math", "math.prod([1, 2, 3, 4])", "math.prod([])"]),
    ("difflib.get_close_matches", ["import difflib",
                                   "difflib.get_close_matches('appel', ['ape', 'apple', 'peach', 'puppy'])"]),
    ("difflib.unified_diff", ["import difflib",
                              "print(''.join(difflib.unified_diff(['a\\n', 'b\\n'], ['a\\n', 'c\\n'], 'old', 'new')))"]),
    ("shlex.split", ["import shlex", "shlex.split('grep -r \"two words\" src/')"]),
    ("shlex.quote", ["import shlex", "print('ls ' + shlex.quote(\"my file's name.txt\"))"]),
    ("fnmatch.fnmatch", ["from fnmatch import fnmatch", "fnmatch('report_2024.csv', 'report_*.csv')",
                         "fnmatch('notes.txt', '*.csv')"]),
    ("dataclasses.dataclass", ["from dataclasses import dataclass, field",
                               "@dataclass\nclass Item:\n    name: str\n    tags: list = field(default_factory=list)",
                               "Item('lamp')", "Item('lamp') == Item('lamp')"]),
    ("dataclasses.asdict", ["from dataclasses import dataclass, asdict",
                            "@dataclass\nclass Point:\n    x: int\n    y: int", "asdict(Point(1, 2))"]),
    ("contextlib.suppress", ["from contextlib import suppress",
                             "with suppress(KeyError):\n    {}['missing']\n    print('not reached')",
                             "print('carried on')"]),
    ("contextlib.contextmanager", ["from contextlib import contextmanager",
                                   "@contextmanager\ndef tag(name):\n    print(f'<{name}>')\n    yield\n"
                                   "    print(f'</{name}>')",
                                   "with tag('p'):\n    print('hello')"]),
    ("urllib.parse.urlparse", ["from urllib.parse import urlparse",
                               "u = urlparse('https://example.org:8080/docs/page?lang=en#intro')",
                               "u.hostname, u.port, u.path, u.query, u.fragment"]),
    ("urllib.parse.urlencode", ["from urllib.parse import urlencode", "urlencode({'q': 'fish & chips', 'page': 2})"]),
    ("urllib.parse.parse_qs", ["from urllib.parse import parse_qs", "parse_qs('tag=a&tag=b&limit=10')"]),
    ("base64.b64encode", ["import base64", "base64.b64encode(b'hello world')", "base64.b64decode(b'aGk=')"]),
    ("uuid.uuid5", ["import uuid", "uuid.uuid5(uuid.NAMESPACE_DNS, 'python.org')"]),
    ("decimal.Decimal", ["from decimal import Decimal", "Decimal('0.1') + Decimal('0.2')",
                         "Decimal('2.675').quantize(Decimal('0.01'))"]),
    ("fractions.Fraction", ["from fractions import Fraction", "Fraction(1, 3) + Fraction(1, 6)",
                            "Fraction('0.125')"]),
    ("enum.Enum", ["from enum import Enum", "class Color(Enum):\n    RED = 1\n    GREEN = 2",
                   "Color(2)", "Color['RED'].value", "[c.name for c in Color]"]),
    ("copy.deepcopy", ["import copy", "a = {'xs': [1, 2]}", "b = copy.deepcopy(a)", "b['xs'].append(3)", "a, b"]),
    ("pprint.pformat", ["from pprint import pformat",
                        "print(pformat({'name': 'curated-align', 'stages': ['ingest', 'score', 'select']}, width=40))"]),
    ("html.escape", ["import html", "html.escape('<a href=\"x\">Tom & Jerry</a>')"]),
    ("zlib.crc32", ["import zlib", "zlib.crc32(b'hello')"]),
    ("struct.pack", ["import struct", "struct.pack('<HI', 1, 2)",
                     "struct.unpack('<HI', b'\\x01\\x00\\x02\\x00\\x00\\x00')"]),
    ("calendar.monthrange", ["import calendar", "calendar.monthrange(2024, 2)"]),
    ("ipaddress.ip_network", ["import ipaddress", "net = ipaddress.ip_network('192.168.1.0/30')",
                              "[str(h) for h in net.hosts()]", "net.num_addresses"]),
    ("unicodedata.name", ["import unicodedata", "unicodedata.name('é')", "unicodedata.lookup('SNOWMAN')"]),
    ("types.SimpleNamespace", ["from types import SimpleNamespace", "cfg = SimpleNamespace(lr=0.001, epochs=3)",
                               "cfg.epochs += 1", "cfg"]),
    ("random.Random", ["import random", "rng = random.Random(42)", "rng.randint(1, 6), rng.choice('abc')"]),
    ("keyword.iskeyword", ["import keyword", "keyword.iskeyword('lambda'), keyword.iskeyword('print')"]),
    ("hashlib.sha256", ["import hashlib", "hashlib.sha256(b'abc').hexdigest()[:16]"]),
    ("binascii.hexlify", ["import binascii", "binascii.hexlify(b'\\x00\\xffhi')"]),
    ("math.hypot", ["import math", "math.hypot(3, 4)"]),
    ("math.log", ["import math", "math.log(8, 2)", "math.log(math.e)"]),
    ("statistics.correlation", ["import statistics",
                                "round(statistics.correlation([1, 2, 3, 4], [2, 4, 5, 9]), 4)"]),
    ("itertools.count", ["from itertools import count", "list(zip(count(1), 'abc'))"]),
    ("functools.cache", ["from functools import cache",
                         "@cache\ndef square(n):\n    print('computing', n)\n    return n * n",
                         "square(4)", "square(4)"]),
    ("datetime.datetime.fromtimestamp", ["from datetime import datetime, timezone",
                                         "datetime.fromtimestamp(0, tz=timezone.utc)"]),
    ("datetime.datetime.isoformat", ["from datetime import datetime", "datetime(2024, 5, 17, 9, 30).isoformat()",
                                     "datetime(2024, 5, 17, 9, 30).isoformat(sep=' ', timespec='minutes')"]),
    ("calendar.isleap", ["import calendar", "[y for y in (1900, 2000, 2023, 2024) if calendar.isleap(y)]"]),
    ("re.subn", ["import re", "re.subn(r'\\d', '#', 'a1b22c333')"]),
    ("operator.methodcaller", ["from operator import methodcaller",
                               "list(map(methodcaller('upper'), ['a', 'b']))"]),
    ("bisect.bisect_right", ["import bisect", "bisect.bisect_right([1, 2, 2, 3], 2), bisect.bisect_left([1, 2, 2, 3], 2)"]),
    ("heapq.nsmallest", ["import heapq", "heapq.nsmallest(3, [7, 2, 9, 4, 1])"]),
    ("collections.Counter.most_common", ["from collections import Counter", "Counter('abracadabra').most_common(3)"]),
    ("difflib.SequenceMatcher", ["import difflib",
                                 "round(difflib.SequenceMatcher(None, 'kitten', 'sitting').ratio(), 3)"]),
    ("enum.auto", ["from enum import Enum, auto", "class Level(Enum):\n    LOW = auto()\n    HIGH = auto()",
                   "[(level.name, level.value) for level in Level]"]),
    ("typing.NamedTuple", ["from typing import NamedTuple",
                           "class Row(NamedTuple):\n    name: str\n    score: int = 0", "Row('ada')"]),
    ("urllib.parse.quote", ["from urllib.parse import quote", "quote('a b/c?d')", "quote('a b/c?d', safe='')"]),
    ("urllib.parse.urljoin", ["from urllib.parse import urljoin",
                              "urljoin('https://example.org/docs/guide.html', 'api.html')"]),
    ("math.floor", ["import math", "math.floor(-2.5), math.ceil(-2.5), int(-2.5)"]),
    ("shlex.join", ["import shlex", "print(shlex.join(['echo', 'hello world', \"it's\"]))"]),
]


def resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def run_session(inputs: list[str]) -> str:
    """Run REPL inputs and return the transcript an interactive session would show."""
    ns: dict = {}
    lines: list[str] = []
    for src in inputs:
        first, *rest = src.split("\n")
        lines.append(">>> " + first)
        lines.extend("... " + r for r in rest)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                code = compile(src, "<example>", "eval")
            except SyntaxError:
                exec(compile(src + "\n", "<example>", "exec"), ns)
            else:
                value = eval(code, ns)
                if value is not None:
                    print(repr(value))
        printed = buf.getvalue().rstrip("\n")
        if printed:
            lines.append(printed)
    transcript = "\n".join(lines)
    assert " at 0x" not in transcript, transcript  # no memory addresses: the output must be deterministic
    return transcript


def session_inputs(inputs: list[str]) -> str:
    return "\n".join(">>> " + src.replace("\n", "\n... ") for src in inputs)


def render_docstring(doc: str, limit: int = 1400) -> str:
    parts: list[str] = []
    for para in re.split(r"\n\s*\n", doc.strip()):
        lines = para.split("\n")
        indented_body = len(lines) > 1 and all(line.startswith((" ", "\t")) for line in lines[1:])
        if para.lstrip().startswith(">>>") or (indented_body and not para.startswith(("-", "*"))):
            parts.append("```\n" + textwrap.dedent(para).strip("\n") + "\n```")
        else:
            parts.append(re.sub(r"``([^`]+)``", r"`\1`", " ".join(line.strip() for line in lines)))
    kept, size = [], 0
    for part in parts:
        if kept and size + len(part) > limit:
            break
        kept.append(part)
        size += len(part) + 2
    return "\n\n".join(kept)


def signature_of(obj, name: str) -> str | None:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return None
    if " at 0x" in sig or "<" in sig:
        return None
    return f"{name}{sig}".replace("(self, ", "(").replace("(self)", "()")


def first_sentence(doc: str) -> str:
    para = " ".join(doc.strip().split("\n\n")[0].split())
    m = re.match(r"(.+?\.)(\s|$)", para)
    return re.sub(r"``([^`]+)``", r"`\1`", m.group(1) if m else para)


FUNCTION_QUESTIONS = ["What does `{n}` do? Show an example.",
                      "How do I use `{n}`? An example would help.",
                      "Explain `{n}` with a short example.",
                      "What is `{n}` for, and how is it called?"]


def stdlib_examples() -> tuple[list[dict], list[dict]]:
    """ShareGPT records (question -> docstring + example run here) and Alpaca rows (session -> output)."""
    sharegpt, alpaca = [], []
    for i, (name, inputs) in enumerate(STDLIB):
        obj = resolve(name)
        doc = inspect.getdoc(obj)
        assert doc, f"{name} has no docstring"
        transcript = run_session(inputs)
        meta = {"origin": f"{name}.__doc__"}
        if i % 2 == 0:
            question = FUNCTION_QUESTIONS[(i // 2) % len(FUNCTION_QUESTIONS)].format(n=name)
            if i % 10 == 8:  # terse, mediocre: one sentence, no example
                answer = first_sentence(doc)
            else:
                sig = signature_of(obj, name)
                answer = (f"`{sig}`\n\n" if sig else "") + render_docstring(doc) + \
                    "\n\nFor example:\n\n```python\n" + transcript + "\n```"
            turns = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
            rec = {"conversations": turns, "source": "stdlib-docstrings", "meta": meta}
            if i % 12 == 6:
                turns.insert(0, {"from": "system", "value": TUTOR})
            elif i % 14 == 4:
                rec["system"] = "Answer questions about the Python standard library accurately."
            sharegpt.append(rec)
        elif i % 4 == 1:
            alpaca.append({"instruction": "What does this interactive Python session print? Explain briefly.",
                           "input": session_inputs(inputs),
                           "output": f"It prints:\n\n```python\n{transcript}\n```\n\n`{name}`: {first_sentence(doc)}",
                           "source": "stdlib-docstrings", "meta": meta})
        else:  # a one-sentence answer to a one-sentence question: short but adequate
            alpaca.append({"instruction": f"In one sentence, what is `{name}` for?", "input": "",
                           "output": first_sentence(doc), "source": "stdlib-docstrings", "meta": meta})
    return sharegpt, alpaca


# --------------------------------------------------------------------------- record shapes

def lima_record(conversations: list[str], source: str, meta: dict, system: str | None = None) -> dict:
    rec = {"conversations": conversations}
    if system:
        rec["system"] = system
    return {**rec, "source": source, "meta": meta}


def turns_of(rec: dict) -> tuple[str | None, list[str]]:
    """(system prompt, alternating user/assistant texts) of a record in any of this script's shapes."""
    if "messages" in rec:
        msgs = rec["messages"]
        system = msgs[0]["content"] if msgs[0]["role"] == "system" else None
        return system, [m["content"] for m in msgs if m["role"] != "system"]
    if "conversations" in rec and rec["conversations"] and isinstance(rec["conversations"][0], dict):
        conv = rec["conversations"]
        system = conv[0]["value"] if conv[0]["from"] == "system" else rec.get("system")
        return system, [t["value"] for t in conv if t["from"] != "system"]
    if "conversations" in rec:
        return rec.get("system"), list(rec["conversations"])
    if "instruction" in rec:
        prompt = rec["instruction"] + (f"\n\n{rec['input']}" if rec.get("input") else "")
        return rec.get("system"), [prompt, rec["output"]]
    return rec.get("system"), [rec["prompt"], rec["response"]]


def reshape(rec: dict, shape: str, source: str, meta: dict) -> dict:
    """The same conversation in another file's shape (single-turn for alpaca and prompt/response)."""
    system, turns = turns_of(rec)
    if shape == "messages":
        msgs = [{"role": "system", "content": system}] if system else []
        msgs += [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns)]
        return {"messages": msgs, "source": source, "meta": meta}
    if shape == "sharegpt":
        conv = [{"from": "system", "value": system}] if system else []
        conv += [{"from": ("human", "gpt")[i % 2], "value": t} for i, t in enumerate(turns)]
        return {"conversations": conv, "source": source, "meta": meta}
    if shape == "lima":
        return lima_record(turns, source, meta, system)
    assert len(turns) == 2 and not system, "alpaca and prompt/response copies are single-turn, no system prompt"
    if shape in ("csv", "alpaca_json"):
        return {"instruction": turns[0], "input": "", "output": turns[1], "source": source, "meta": meta}
    return {"prompt": turns[0], "response": turns[1], "source": source, **meta}


# A near duplicate changes a few words: in the answer the first three of these edits that apply, in the
# prompt the first one.
ANSWER_EDITS = [("For example", "For instance"), ("example", "instance"), (" is used ", " is employed "),
                ("returns", "gives back"), (" usually ", " typically "), (" must ", " has to "),
                ("Use ", "Try "), (" the ", " that "), (" a ", " one ")]
PROMPT_EDITS = [("Explain", "Describe"), ("How do I", "How can I"), ("How does", "How exactly does"),
                ("What is", "What's"), ("What's", "What is"), ("Can you", "Could you"), ("?", ", please?")]


def near_duplicate(text: str, edits: list[tuple[str, str]], most: int) -> str:
    done = 0
    for old, new in edits:
        if old in text and done < most:
            text = text.replace(old, new, 1)
            done += 1
    assert done >= min(most, 2), text[:80]
    return text


def norm_prompt(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


# --------------------------------------------------------------------------- the pool

def build_pool(evals: dict[str, dict]) -> dict[str, list[dict]]:
    topics = pydoc_examples()
    sharegpt, csv_rows = stdlib_examples()
    files = {
        "messages": topics,
        "sharegpt": sharegpt,
        "csv": csv_rows,
        "lima": [lima_record(item["conversations"], "handwritten", {}, item.get("system"))
                 for item in hw.LIMA_GOOD],
        "parquet": [{"prompt": p, "response": r, "source": "forum-style"} for p, r in hw.FORUM_GOOD],
        "alpaca_json": [{**t, "source": "handwritten"} for t in hw.TASKS],
    }

    # multi-turn ShareGPT: a follow-up question answered with an example run here
    followups = dict(hw.SHAREGPT_FOLLOWUPS)
    for rec in sharegpt:
        name = rec["meta"]["origin"].removesuffix(".__doc__")
        if name in followups:
            question, inputs, lead = followups.pop(name)
            rec["conversations"] += [{"from": "human", "value": question},
                                     {"from": "gpt", "value": f"{lead}\n\n```python\n{run_session(inputs)}\n```"}]
    assert not followups, f"follow-ups for functions not in the ShareGPT file: {sorted(followups)}"

    # planted bad examples written by hand
    for item in hw.PLANTED:
        shape = item["file"]
        source = "forum-style" if shape == "parquet" else "handwritten"
        meta = note(item["kind"], item["why"])
        if "input" in item:
            files[shape].append({"instruction": item["prompt"], "input": item["input"], "output": item["answer"],
                                 "source": source, "meta": meta})
        else:
            files[shape].append(reshape({"prompt": item["prompt"], "response": item["answer"]}, shape, source, meta))

    # contaminated: the prompt copies an evaluation prompt (exactly, with case and punctuation changed,
    # or split into instruction and input)
    answers = hw.CONTAMINATED_ANSWERS

    def contaminated(eval_id: str, how: str) -> dict:
        return note("contaminated", f"prompt copies evaluation prompt {eval_id} ({how})")

    p = evals["coding-02"]["prompt"]
    files["parquet"].append({"prompt": p, "response": answers["coding-02"], "source": "forum-style",
                             **contaminated("coding-02", "exact")})
    p = evals["explanation-02"]["prompt"]
    files["lima"].append(lima_record([p, answers["explanation-02"]], "handwritten",
                                     contaminated("explanation-02", "exact")))
    p = evals["python-stdlib-05"]["prompt"].lower().rstrip("?")
    files["csv"].append({"instruction": p, "input": "", "output": answers["python-stdlib-05"],
                         "source": "handwritten", "meta": contaminated("python-stdlib-05", "lower case, no '?'")})
    instruction, _, sentence = evals["writing-03"]["prompt"].partition(": ")
    files["alpaca_json"].append({"instruction": instruction + ":", "input": sentence,
                                 "output": answers["writing-03"], "source": "handwritten",
                                 "meta": contaminated("writing-03", "split into instruction and input")})

    # exact duplicates: the same example again, in a file that sorts later (so the original is read first)
    def dup(rec: dict, from_shape: str, to_shape: str) -> None:
        meta = {k: v for k, v in rec.get("meta", {}).items() if k != "quality_note"}
        meta.update(note("exact-duplicate", f"same example as in {FILES[from_shape]}"))
        files[to_shape].append(reshape(rec, to_shape, rec["source"], meta))

    by_origin = {r["meta"]["origin"]: r for r in topics if "origin" in r["meta"]}
    for key in ("break", "lambda", "pass"):
        dup(by_origin[f"pydoc_data.topics[{key!r}]"], "messages", "csv")
    dup(next(r for r in topics if r["messages"][0]["role"] == "system"), "messages", "sharegpt")
    for rec in files["parquet"][:2]:
        dup(rec, "parquet", "lima")
    single = [r for r in sharegpt if "origin" in r["meta"] and len(r["conversations"]) == 2 and "system" not in r]
    for rec in single[:2]:
        dup(rec, "sharegpt", "alpaca_json")
    # and one inside a file that differs only in whitespace (CRLF, trailing spaces, blank lines)
    src = by_origin["pydoc_data.topics['continue']"]
    copy = json.loads(json.dumps(src))
    for m in copy["messages"]:
        m["content"] = "  " + m["content"].replace("\n", "  \r\n").replace("\r\n\r\n", "\r\n\r\n\r\n") + " \n"
    copy["meta"].update(note("exact-duplicate", "same example as above in this file, whitespace changed"))
    topics.append(copy)

    # near duplicates: a few words changed, in prompt and answer
    def near(rec: dict, from_shape: str, to_shape: str) -> None:
        system, turns = turns_of(rec)
        changed = {"prompt": near_duplicate(turns[0], PROMPT_EDITS, 1),
                   "response": near_duplicate(turns[1], ANSWER_EDITS, 3)}
        meta = {k: v for k, v in rec.get("meta", {}).items() if k != "quality_note"}
        meta.update(note("near-duplicate", f"a few words changed from an example in {FILES[from_shape]}"))
        files[to_shape].append(reshape(changed, to_shape, rec["source"], meta))

    for key in ("for", "raise"):
        near(by_origin[f"pydoc_data.topics[{key!r}]"], "messages", "parquet")
    lima_single = [r for r in files["lima"][: len(hw.LIMA_GOOD)] if len(r["conversations"]) == 2 and "system" not in r]
    for rec in (lima_single[1], lima_single[5]):
        near(rec, "lima", "alpaca_json")
    for rec in single[3:5]:
        near(rec, "sharegpt", "csv")
    for rec in files["parquet"][4:6]:
        near(rec, "parquet", "lima")

    check_contamination(files, evals)
    return files


def check_contamination(files: dict[str, list[dict]], evals: dict[str, dict]) -> None:
    """Only the planted examples may share a prompt with an evaluation prompt."""
    eval_norm = {norm_prompt(e["prompt"]): e["id"] for e in evals.values()}
    for shape, records in files.items():
        for rec in records:
            planted = (rec.get("meta") or rec).get("quality_note") or ""
            hit = eval_norm.get(norm_prompt(turns_of(rec)[1][0]))
            assert bool(hit) == planted.startswith("contaminated"), (shape, hit, planted)


def bad_records() -> list[bytes]:
    """Lines for bad/invalid.jsonl: two valid records among invalid ones, one problem each."""
    lines = [
        {"messages": [{"role": "user", "content": "Name a prime number."},
                      {"role": "assistant", "content": "7 is prime."}], "source": "handwritten"},
        '{"messages": [{"role": "user", "content": "This line is cut off"}',          # malformed JSON
        {"messages": [{"role": "user", "content": "Is anyone there?"}]},              # no assistant answer
        {"conversations": ["What is 2 + 2?", "   "]},                                 # empty answer
        {"messages": [{"role": "narrator", "content": "It was a dark night."},        # unknown role
                      {"role": "assistant", "content": "Indeed."}]},
        {"instruction": "Name a colour.", "input": "", "output": "Teal.", "source": "handwritten"},
        {"text": "A record in no known format."},                                     # unknown format
    ]
    out = [(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)).encode() for line in lines]
    out.append(b'{"prompt": "Caf\xe9 menu?", "response": "Latin-1 bytes, not UTF-8."}')  # not UTF-8
    return out


# --------------------------------------------------------------------------- writing

def write_all(files: dict[str, list[dict]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def jsonl(name: str, records: list[dict]) -> None:
        with open(HERE / name, "w", encoding="utf-8", newline="\n") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    jsonl(FILES["messages"], files["messages"])
    jsonl(FILES["lima"], files["lima"])
    with open(HERE / FILES["sharegpt"], "w", encoding="utf-8", newline="\n") as fh:
        json.dump(files["sharegpt"], fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    with open(HERE / FILES["alpaca_json"], "w", encoding="utf-8", newline="\n") as fh:
        json.dump({"data": files["alpaca_json"]}, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    with open(HERE / FILES["csv"], "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["instruction", "input", "output", "source", "meta"])
        writer.writeheader()
        for rec in files["csv"]:
            writer.writerow({**rec, "meta": json.dumps(rec["meta"], ensure_ascii=False) if rec.get("meta") else ""})
    columns = ["prompt", "response", "system", "source", "origin", "quality_note"]
    table = pa.table({c: pa.array([rec.get(c) for rec in files["parquet"]], type=pa.string()) for c in columns})
    pq.write_table(table, HERE / FILES["parquet"], compression="zstd")
    (HERE / BAD_FILE).parent.mkdir(exist_ok=True)
    (HERE / BAD_FILE).write_bytes(b"\n".join(bad_records()) + b"\n")


def load_evals() -> dict[str, dict]:
    with open(EVAL_PROMPTS, encoding="utf-8") as fh:
        return {e["id"]: e for e in map(json.loads, fh)}


# --------------------------------------------------------------------------- --check: read back and count

def pool_files() -> list[Path]:
    """The default pool: every data file directly in this folder (not bad/), in sorted order."""
    return sorted(p for p in HERE.iterdir() if p.suffix in (".jsonl", ".json", ".csv", ".parquet"))


def check() -> None:
    sys.path.insert(0, str(HERE.parent.parent))
    from contract.readers import ReadResult, read_examples

    result, seen = ReadResult(), set()
    print("| file | format | records | kept | duplicates of earlier files |\n|---|---|---:|---:|---:|")
    for path in pool_files():
        before_ex, before_dup = len(result.examples), result.duplicates
        read_examples(path, result=result, seen=seen)
        kept, dups = len(result.examples) - before_ex, result.duplicates - before_dup
        fmt = path.name.split(".")[-2] if path.name.count(".") > 1 else "prompt/response"
        print(f"| `{path.name}` | {fmt} | {kept + dups} | {kept} | {dups} |")
    print(f"| **total** | | {len(result.examples) + result.duplicates} | {len(result.examples)} | "
          f"{result.duplicates} |")
    assert not result.rejects
    print("\n| source | examples |\n|---|---:|")
    for source, n in result.counts_by_source().items():
        print(f"| `{source}` | {n} |")
    kinds: dict[str, int] = {}
    for ex in result.examples:
        kind = ex["meta"].get("quality_note", "none: not planted").split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    print("\n| planted kind (among kept examples) | examples |\n|---|---:|")
    for kind in (*PLANTED_KINDS, "none"):
        print(f"| {kind} | {kinds.get(kind, 0)} |")
    multi = sum(1 for ex in result.examples if sum(m["role"] == "assistant" for m in ex["messages"]) > 1)
    system = sum(1 for ex in result.examples if ex["messages"][0]["role"] == "system")
    print(f"\nmulti-turn: {multi}, with a system prompt: {system}")
    size = sum(p.stat().st_size for p in pool_files())
    print(f"pool size on disk: {size / 1024:.0f} KiB")
    bad = read_examples(HERE / BAD_FILE, on_error="skip")
    print(f"\n{BAD_FILE}: {len(bad.examples)} valid, {len(bad.rejects)} rejected")
    for r in bad.rejects:
        print(f"  line {r.line}: {r.error}")


def main() -> None:
    if "--check" in sys.argv:
        check()
        return
    if sys.version_info[:2] != BUILT_WITH:
        print(f"warning: the committed pool was built with Python {BUILT_WITH[0]}.{BUILT_WITH[1]}; this is "
              f"{sys.version_info[0]}.{sys.version_info[1]}, whose docs and docstrings differ", file=sys.stderr)
    files = build_pool(load_evals())
    write_all(files)
    for shape, records in files.items():
        print(f"{FILES[shape]}: {len(records)} records")
    print(f"{BAD_FILE}: {len(bad_records())} lines")


if __name__ == "__main__":
    main()
