"""finetune: QLoRA / LoRA supervised fine-tuning on a messages dataset.

Command line: ``python -m finetune --config finetune/recipes/<recipe>.yaml [--key value ...]`` and
``python -m finetune merge RUN_DIR``. From Python: ``finetune.train.run(finetune.config.load(path, **overrides))``
returns the run folder. See finetune/README.md.
"""
