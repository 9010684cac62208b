"""python -m finetune --config finetune/recipes/<recipe>.yaml [--key value ...]
python -m finetune merge RUN_DIR [--output DIR]

The spine: parse (defaults < YAML < flags) → validate (every problem at once) → load → train → save.
Loading, training and saving are ``finetune.train.run``; ``--help`` lists every option.
"""

from __future__ import annotations

import logging
import os
import sys

from contract.schema import DataError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if argv[:1] == ["merge"]:
            from finetune.merge import main as merge_main

            return merge_main(argv[1:])
        from finetune.config import parse_args

        cfg = parse_args(argv)  # parse + validate the values: one ValueError listing every problem
        from finetune.train import run  # heavy imports only after the config is known to be good

        run(cfg)  # check inputs → load data and model → train (or resume) → save the run folder
        return 0
    except (ValueError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from finetune.merge import MergeCheckFailed
        from finetune.train import TrainingDiverged, TrainingInterrupted

        if isinstance(err, (TrainingDiverged, TrainingInterrupted, MergeCheckFailed)):
            print(f"error: {err}", file=sys.stderr)
            return 143 if isinstance(err, TrainingInterrupted) else 1
        raise


if __name__ == "__main__":
    sys.exit(main())
