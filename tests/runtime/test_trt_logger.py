"""runtime/trt_logger.py: the one TensorRT logger's error collection and forwarding.

TensorRT is not installed here, so the logger class is made over a plain base class (what
`trt.ILogger` adds is the C++ trampoline); its own logic runs for real. On a machine with
TensorRT, `shared_logger()` is checked to hand out a single instance.
"""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest

from runtime.trt_logger import make_logger_class, shared_logger


def _severity(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name)  # what trt.ILogger.Severity members offer


def test_errors_are_collected_per_thread_and_per_block() -> None:
    logger = make_logger_class(object)()
    logger.log(_severity("ERROR"), "before any block")  # not collected, nobody asked
    seen_by_worker: list[str] = []

    def worker() -> None:
        with logger.collect_errors() as errors:
            logger.log(_severity("ERROR"), "worker failed")
        seen_by_worker.extend(errors)

    with logger.collect_errors() as errors:
        logger.log(_severity("INTERNAL_ERROR"), "main failed")
        logger.log(_severity("WARNING"), "only a warning")
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        with logger.collect_errors() as inner:
            logger.log(_severity("ERROR"), "nested")
    assert errors == ["main failed", "nested"]
    assert inner == ["nested"]
    assert seen_by_worker == ["worker failed"]


def test_forwarding_follows_the_severity_of_the_block(caplog: pytest.LogCaptureFixture) -> None:
    logger = make_logger_class(object)()
    with caplog.at_level(logging.DEBUG, logger="runtime.trt_logger"):
        logger.log(_severity("INFO"), "quiet by default")
        with logger.forwarding("VERBOSE"):
            logger.log(_severity("VERBOSE"), "a build asked for everything")
        logger.log(_severity("WARNING"), "warned")
    assert [r.getMessage() for r in caplog.records] == [
        "TensorRT: a build asked for everything",
        "TensorRT: warned",
    ]
    with pytest.raises(ValueError, match="severity must be one of"):
        with logger.forwarding("LOUD"):
            pass


@pytest.mark.tensorrt
def test_one_logger_per_process() -> None:
    assert shared_logger() is shared_logger()
