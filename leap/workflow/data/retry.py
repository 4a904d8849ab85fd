"""Downloads that survive a flaky server: a transient failure (HTTP 429 or 5xx, a dropped or
timed-out connection, a download cut short) is retried with exponential backoff, as many
times as ``data.download_attempts`` says; anything else (a missing repository or revision,
offline mode) fails at once. The Hugging Face client retries a few times on its own; this is
the run's outer loop, stated in the config."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from leap.errors import LeapError

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
TRANSIENT_NAMES = {
    "ConnectError",
    "ConnectTimeout",
    "ConnectionError",
    "ChunkedEncodingError",
    "IncompleteRead",
    "ProtocolError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Timeout",
    "TimeoutException",
    "WriteError",
}
PERMANENT_NAMES = {"OfflineModeIsEnabled", "RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError"}


class TransientDownloadError(Exception):
    """A download that can succeed when tried again (a truncated or altered file)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is worth another attempt."""
    chain = list(_chain(exc))
    permanent = ("doesn't exist", "OfflineModeIsEnabled", "offline mode")
    if any(type(e).__name__ in PERMANENT_NAMES or any(s in str(e) for s in permanent) for e in chain):
        return False
    for e in chain:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in TRANSIENT_STATUS or isinstance(e, (TransientDownloadError, ConnectionError, TimeoutError)):
            return True
        if any(cls.__name__ in TRANSIENT_NAMES for cls in type(e).__mro__):
            return True
    return False


def first_line(exc: BaseException) -> str:
    """What went wrong, in one line: the HTTP status or the network error behind ``exc`` when
    there is one (the Hub client wraps them in less telling errors), else ``exc`` itself."""
    for e in _chain(exc):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in TRANSIENT_STATUS:
            return f"HTTP {status} from the server ({type(e).__name__})"
    cause = next((e for e in _chain(exc) if any(c.__name__ in TRANSIENT_NAMES for c in type(e).__mro__)), exc)
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0]}" if text else type(cause).__name__


@dataclass(frozen=True)
class Retry:
    """``attempts`` tries in all, waiting ``backoff`` seconds after the first failure and
    twice as long after each next one."""

    attempts: int = 3
    backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0:
            raise LeapError(f"download attempts must be >= 1 and backoff >= 0, got {self.attempts}, {self.backoff}")

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, tried again after a transient failure; the last failure is raised."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except LeapError:
                raise
            except Exception as exc:
                if attempt == self.attempts or not is_transient(exc):
                    raise
                wait = self.backoff * 2 ** (attempt - 1)
                log.warning(
                    "%s: %s; attempt %d of %d again in %.1f s", what, first_line(exc), attempt + 1, self.attempts, wait
                )
                time.sleep(wait)
        raise AssertionError("unreachable")
