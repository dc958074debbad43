"""Logging of every hemhub process (commands, and the worker processes they start)."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime

LOG_FORMATS = ("plain", "json")
#: What a LogRecord carries by itself; any other attribute came from `extra=`.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
#: syslog priorities (sd-daemon(3) prefixes) of the logging levels, for journald.
_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the
    `extra=` fields of the call, and the traceback (`exc`) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


class JournalFormatter(logging.Formatter):
    """Plain lines with the syslog priority as an sd-daemon prefix (`<4>`): journald
    stamps each line with its own time, unit and PID and takes the prefix as PRIORITY,
    so `journalctl -p warning` works."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6 if record.levelno < 30 else 3)
        # Every line of a traceback carries the prefix, or journald takes it as INFO.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def _stderr_is_journal() -> bool:
    """stderr is connected to journald (systemd sets $JOURNAL_STREAM to its device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
        return bool(stream) and (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


def setup_logging(*, verbose: bool = False, log_format: str | None = None) -> None:
    """The logging of every `hemhub` command. `log_format` (else $HEMHUB_LOG_FORMAT):
    `json` for one JSON object a line, `plain` for text lines; unset, plain with the
    time, or under systemd with stderr going to the journal, plain with syslog priority
    prefixes and no time (journald records it)."""
    chosen = (log_format or os.environ.get("HEMHUB_LOG_FORMAT") or "").strip().lower()
    unknown = chosen if chosen and chosen not in LOG_FORMATS else None
    if unknown:
        chosen = "plain"  # a typo must not keep an unattended hub from starting
    formatter: logging.Formatter
    if chosen == "json":
        formatter = JsonFormatter()
    elif not chosen and _stderr_is_journal():
        formatter = JournalFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if chosen:
        os.environ["HEMHUB_LOG_FORMAT"] = chosen  # worker processes this one starts
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )
    if unknown:
        logging.getLogger("hemhub").warning(
            "unknown log format %r (HEMHUB_LOG_FORMAT); one of %s: using plain",
            unknown,
            ", ".join(LOG_FORMATS),
        )
