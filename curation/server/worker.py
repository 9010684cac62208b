"""`python -m curation.server.worker`: argilla-server's rq worker, with the SQL search engine registered.

Started by the serving process with the ARGILLA_* environment already set; not meant to be run by hand.
"""

import logging
import os
import sys


def main() -> int:
    if not os.environ.get("ARGILLA_REDIS_URL"):
        print("curation.server.worker is started by `python -m curation serve`; ARGILLA_REDIS_URL is not set",
              file=sys.stderr)
        return 2
    import curation.server.search_engine  # noqa: F401  (registers the engine in this process)
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import Worker

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(levelname)s %(message)s")
    worker = Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION)
    worker.work(logging_level="WARNING", with_scheduler=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
