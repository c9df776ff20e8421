"""`python -m tools.create_topics`: creates the project's topics that do not exist yet
(app.transport.admin), with their partition counts and configs. `make infra` runs it
before the worker starts."""

import logging

from app.config import get_settings
from app.transport.admin import ensure_topics, topic_specs

log = logging.getLogger(__name__)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    created = ensure_topics(settings, topic_specs(settings))
    log.info("topics created: %s", ", ".join(created) if created else "none (all exist)")


if __name__ == "__main__":
    main()
