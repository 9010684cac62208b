"""finetune's config: every shipped recipe and accelerate config parses, bad keys and values fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetune import config as C

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "finetune" / "recipes").glob("*.yaml"))
ACCELERATE = sorted((REPO / "finetune" / "accelerate").glob("*.yaml"))


def test_the_three_recipes_ship():
    names = {p.name for p in RECIPES}
    assert "tiny-cpu.yaml" in names
    assert any("8b" in n for n in names), names
    assert any(n.startswith("lima-") for n in names), names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_parses_and_validates(path):
    cfg = C.load(path)
    assert C.validate(cfg) == []
    # every key in the file is a real field (load would have raised) and the file sets model and data
    raw = yaml.safe_load(path.read_text())
    assert raw["model"] and raw["data"]
    # each recipe begins with the exact command that runs it
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python -m finetune --config finetune/recipes/" + path.name), first


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_config_parses(path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    cluster = ClusterConfig.from_yaml_file(str(path))  # raises on unknown top-level keys
    options = {o for action in launch_command_parser()._actions for o in action.option_strings}
    for key in cluster.fsdp_config or {}:
        assert f"--{key}" in options, f"{path.name}: fsdp_config key {key!r} is not an accelerate option"
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# accelerate launch --config_file finetune/accelerate/{path.name} -m finetune")


def test_fsdp_qlora_pairs_with_bf16_quant_storage():
    fsdp = REPO / "finetune" / "accelerate" / "fsdp_qlora.yaml"
    assert "FSDP" in fsdp.read_text()
    command = fsdp.read_text().splitlines()[0]
    assert "--quant_storage bfloat16" in command
    recipe = command.split("--config ")[1].split()[0]
    cfg = C.parse_args(["--config", str(REPO / recipe), "--quant_storage", "bfloat16"])
    assert cfg.quant_storage == "bfloat16" and cfg.quantization == "nf4"


def test_defaults_yaml_then_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m/x\ndata: d.jsonl\nlearning_rate: 1e-4\nmax_steps: 7\nresume: false\n")
    cfg = C.parse_args(["--config", str(recipe), "--max-steps", "9", "--resume", "--dev_data", "null",
                        "--lora_target", "q_proj,v_proj"])
    assert cfg.learning_rate == 1e-4  # YAML's "1e-4" (a string to YAML 1.1) read as a float
    assert cfg.max_steps == 9 and cfg.resume is True and cfg.dev_data is None
    assert cfg.lora_target == "q_proj,v_proj"
    assert cfg.lora_r == C.FinetuneConfig().lora_r == 64  # QLoRA's default


def test_unknown_yaml_key_names_the_closest(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m/x\ndata: d.jsonl\nlearning_rat: 1e-4\n")
    with pytest.raises(ValueError, match=r"unknown key 'learning_rat' \(did you mean 'learning_rate'\?\)"):
        C.load(recipe)


def test_unknown_flag_names_the_closest():
    with pytest.raises(ValueError) as err:
        C.parse_args(["--model", "m/x", "--data", "d.jsonl", "--lora-rank", "8"])
    assert "unknown option '--lora-rank' (did you mean 'lora_r'?)" in str(err.value)
    assert "unexpected argument" not in str(err.value)  # the value of the unknown option is not reported twice


def test_every_problem_reported_at_once():
    with pytest.raises(ValueError) as err:
        C.parse_args(["--lora_r", "0", "--batching", "pad", "--dev_size", "2", "--max_steps", "ten"])
    msg = str(err.value)
    for needle in ("model: required", "data: required", "lora_r: must be >= 1", "batching: 'pad' is not one of",
                   "dev_size: must be a fraction", "max_steps: 'ten' is not an integer"):
        assert needle in msg, (needle, msg)


def test_resolved_yaml_round_trips_with_comments(tmp_path):
    cfg = C.parse_args(["--model", "m/x", "--data", "d.jsonl", "--lora_dropout", "0.05", "--dev_data", "dev.jsonl"])
    path = C.save_yaml(cfg, tmp_path / "config.yaml", header="hello")
    text = path.read_text()
    assert text.startswith("# hello")
    for name, f in C.FIELDS.items():  # every field documented once, and the docs are in the file
        assert f.metadata["help"].split()[0] in text
        assert f"\n{name}:" in text
    assert C.load(path) == cfg


def test_help_lists_every_option_with_default():
    out = subprocess.run([sys.executable, "-m", "finetune", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    text = "".join(out.stdout.split())  # argparse wraps lines, at hyphens too
    for name, f in C.FIELDS.items():
        assert f"--{name}" in text, name
        default = "(required)" if f.default == "" else f"(default:{C._fmt_default(f.default)})"
        assert default.replace(" ", "") in text, (name, default)
        assert "".join(f.metadata["help"].split()[:4]) in text, name
    assert "merge" in text


def test_cli_bad_key_exits_2_with_message(tmp_path):
    out = subprocess.run([sys.executable, "-m", "finetune", "--config", str(RECIPES[0]), "--learning-rat", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "did you mean 'learning_rate'" in out.stderr
    assert "Traceback" not in out.stderr


def test_optimizer_names_are_transformers_names_and_checked():
    """Every optimizer a recipe may name is one transformers knows; a misspelt one fails validation with the list."""
    from transformers.training_args import OptimizerNames

    assert set(C.OPTIMIZERS) <= {o.value for o in OptimizerNames}
    assert {"paged_adamw_8bit", "paged_adamw_32bit", "adamw_8bit"} <= set(C.OPTIMIZERS)
    with pytest.raises(ValueError, match="optim: 'paged_adamw_8bits' is not one of .*paged_adamw_8bit"):
        C.parse_args(["--model", "m", "--data", "d", "--optim", "paged_adamw_8bits"])
    with pytest.raises(ValueError, match="loss: 'fast' is not one of auto, chunked, fused, full"):
        C.parse_args(["--model", "m", "--data", "d", "--loss", "fast"])
