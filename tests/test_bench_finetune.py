"""The fine-tuning benchmark's own logic: arms with settings, and targets only judged where their arms ran."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("bench_finetune",
                                              Path(__file__).resolve().parent.parent / "bench" / "bench_finetune.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_an_arm_carries_config_settings_and_flags():
    assert bench.parse_arm("finetune") == ("finetune", {})
    assert bench.parse_arm("finetune:loss=chunked:gradient_checkpointing=false:profile") == (
        "finetune", {"loss": "chunked", "gradient_checkpointing": False, "profile": True})
    assert bench.parse_arm("trl_default:profile") == ("trl_default", {"profile": True})


def test_a_target_whose_arm_did_not_run_is_not_judged():
    arm = dict(tokens_per_second=6000.0, tokens_per_cpu_second=5900.0, peak_cuda_gib=2.0, padding_waste=0.0)
    arms = {"finetune": arm, "trl_best": dict(arm, tokens_per_second=4000.0, tokens_per_cpu_second=3900.0,
                                             peak_cuda_gib=2.5)}
    summary, targets = bench.summarize(arms, "cuda", 494_000_000, 989.0, "qwen0.5b")
    assert summary["throughput_vs_trl_best"] == 1.5 and targets["throughput_ge_1.2x_trl_best"] is True
    assert targets["throughput_ge_2x_trl_default"] is None and targets["peak_memory_le_trl_default"] is None
    assert targets["padding_free_ge_1.5x_padded"] is None
    assert arms["finetune"]["mfu"] == round(6 * 494_000_000 * 6000 / 989e12, 4)
