"""Third-party chatter routed to the log: what torch's exporter, ONNX Runtime's quantiser and
transformers' loaders print while ``leap`` exports or calibrates is kept at DEBUG level in
``leap``'s own log instead of filling the user's terminal."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


class _ToLog(logging.Filter):
    """Drops records logged straight to the root logger (third-party ``logging.warning`` calls),
    logging each again at DEBUG on ``log``. Records of named loggers are never touched."""

    def __init__(self, log: logging.Logger) -> None:
        super().__init__()
        self.log = log

    def filter(self, record: logging.LogRecord) -> bool:
        self.log.debug("%s (%s)", record.getMessage(), record.pathname)
        return False


@contextmanager
def third_party_to_log(log: logging.Logger) -> Iterator[None]:
    """Inside: Python warnings, root-logger messages and transformers' progress bars go to
    ``log`` at DEBUG level (``leap --verbose`` and a rule's log show them)."""
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    to_log = _ToLog(log)
    bars = hf_logging.is_progress_bar_enabled()
    root.addFilter(to_log)
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            log.debug("%s: %s (%s:%s)", w.category.__name__, w.message, w.filename, w.lineno)
    finally:
        root.removeFilter(to_log)
        if bars:
            hf_logging.enable_progress_bar()
