"""Pairwise win rate as a Hugging Face `evaluate` module.

    import evaluate
    win_rate = evaluate.load("eval/metrics/pairwise_win_rate")   # a local path: no Hub needed
    win_rate.compute(predictions=["win", "tie", "loss", "win"])
    win_rate.compute(predictions=verdicts, len_a=[...], len_b=[...])   # adds the length-controlled rate

`predictions` are pairwise verdicts from the candidate's side: "win", "tie", "loss" (or 1, 0.5, 0 as
strings). It computes what `python -m eval report` shows, with the same code (`eval.stats`, so the
curated-align package must be importable): the win rate with ties as half, Wilson and paired-bootstrap
95 % intervals, the sign-test p-value, and with lengths, the length-controlled win rate.
"""

import datasets
import evaluate

from eval import stats

_CITATION = """\
@article{zhou2023lima, title={LIMA: Less Is More for Alignment}, author={Zhou, Chunting and others}, year={2023}}
@article{dubois2024length, title={Length-Controlled AlpacaEval: A Simple Way to Debias Automatic Evaluators},
  author={Dubois, Yann and Galambosi, Bal{\\'a}zs and Liang, Percy and Hashimoto, Tatsunori B}, year={2024}}
"""

_DESCRIPTION = "Win rate of a candidate over a reference from pairwise verdicts (ties count half), with intervals."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of "win" / "tie" / "loss" (also "1", "0.5", "0"), one per prompt.
    len_a, len_b (optional): lengths of the candidate's and the reference's answers, for the
        length-controlled win rate.
    n_boot (optional, default 2000), seed (optional, default 0): the paired bootstrap.
Returns:
    win_rate, wins, ties, losses, n, wilson_low, wilson_high, bootstrap_low, bootstrap_high,
    sign_test_p, and with lengths lc_win_rate (None where length cannot be controlled, the reason in
    lc_problem), its bootstrap interval lc_low, lc_high, and length_coef.
Examples:
    >>> m = evaluate.load("eval/metrics/pairwise_win_rate")
    >>> m.compute(predictions=["win", "win", "tie", "loss"])["win_rate"]
    0.625
"""

_ALIASES = {"1": "win", "1.0": "win", "0.5": "tie", "0": "loss", "0.0": "loss", "a": "win", "b": "loss"}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PairwiseWinRate(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/2305.11206", "https://arxiv.org/abs/2404.04475"],
        )

    def _compute(self, predictions, len_a=None, len_b=None, n_boot=2000, seed=0):
        verdicts = []
        for p in predictions:
            v = _ALIASES.get(str(p).strip().lower(), str(p).strip().lower())
            if v not in stats.SCORE:
                raise ValueError(f"verdict {p!r} is not win/tie/loss")
            verdicts.append(v)
        s = stats.summarize(verdicts, len_a, len_b, n_boot=n_boot, seed=seed)
        out = {
            "win_rate": s["win_rate"], "wins": s["win"], "ties": s["tie"], "losses": s["loss"], "n": s["n"],
            "wilson_low": s["wilson"][0], "wilson_high": s["wilson"][1],
            "bootstrap_low": s["bootstrap"][0], "bootstrap_high": s["bootstrap"][1],
            "sign_test_p": s["sign_test_p"],
        }
        if len_a is not None and len_b is not None:
            lc_low, lc_high = s["lc_interval"] or (None, None)
            out.update(lc_win_rate=s["lc_win_rate"], lc_low=lc_low, lc_high=lc_high, length_coef=s["lc_length_coef"],
                       lc_problem=s["lc_problem"])  # lc_win_rate None, with the reason, where length cannot be controlled
        return out
