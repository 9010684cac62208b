"""`python -m curation.server.worker`: argilla-server's rq worker, with the SQL search engine registered.

Started by the serving process with the ARGILLA_* environment already set; not meant to be run by hand.
It is rq's SimpleWorker: jobs run in this process (no fork per job), so a killed worker leaves no job running
behind it, and the serving process can put the job back in its queue (`children.requeue_started_jobs`).
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
    from curation.server import patches

    patches.apply()  # the same speed-ups as the server: a status job no longer builds a webhook event per record
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import SimpleWorker

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(levelname)s %(message)s")
    worker = SimpleWorker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION)
    worker.work(logging_level="WARNING", with_scheduler=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
