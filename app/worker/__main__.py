"""`python -m app.worker worker -l info`: the worker, built from the settings of the
environment (app.config); other faust commands (`python -m app.worker --help`) work too."""

import sys

from app.config import get_settings
from app.worker.bootstrap import build_worker, declare_internal_topics


def main() -> None:
    settings = get_settings()
    app = build_worker(settings)
    if sys.argv[1:2] == ["worker"] and "--help" not in sys.argv:
        # faust's `worker` command turns its web server on unless told otherwise (whatever
        # web_enabled says). The worker serves only its own /metrics and health
        # (app.worker.monitor), and faust's fixed port would keep a second worker from
        # starting on the same host.
        if not any(arg.startswith("--with") for arg in sys.argv):
            sys.argv.append("--without-web")
        declare_internal_topics(app, settings)
    app.main()


if __name__ == "__main__":
    main()
