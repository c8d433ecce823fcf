"""What the command-line tools share: the repository's paths, the common flags, logging, the
JSON report and the backend options.

The tools of runtime/, export/ and calibration/ take their paths and common flags from here,
those of model/ their paths, so a default or a help text is written once. This is a CLI-layer module: the core
(pipeline, manifest, backends) never imports it; it may import the core. Argument parsing
errors are argparse's (exit status 2, with the usage); what a tool checks after parsing raises
an UnfoldError for its `main` to report.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.atomic_io import atomic_write_bytes
from runtime.backends.options import describe_options, parse_backend_option
from runtime.cli_sizes import frame_size
from runtime.errors import InputError, ManifestError, UnfoldError, report_error
from runtime.manifest import MANIFEST_NAME

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ARTIFACTS = REPO / "artifacts" / "edge"
# Data sets shared by every checkout of the repository lie next to it.
DEFAULT_DATA = REPO.parent / "shared" / "data"


def tool_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A tool's parser; its module docstring (`description`) is shown as written, examples included."""
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it (for help texts)."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


# --------------------------------------------------------------------------- common flags


def add_artifacts_argument(parser: argparse.ArgumentParser, default: Path = DEFAULT_ARTIFACTS) -> None:
    """--artifacts DIR. Tools pass `default` from their own module, so a test can point it elsewhere."""
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=default,
        metavar="DIR",
        help=f"folder holding {MANIFEST_NAME} and graphs/, written by export/build_engines.py "
        f"(default: {shown(default)}/)",
    )


def require_export(artifacts: Path, default: Path = DEFAULT_ARTIFACTS) -> None:
    """ManifestError with the command to run when the default artifacts were never built
    (any other folder is checked when its manifest is read)."""
    if artifacts == default and not (default / MANIFEST_NAME).is_file():
        raise ManifestError(
            f"{default}: the shipped model has not been exported yet; "
            "run `python export/build_engines.py` first (or pass --artifacts DIR)"
        )


def add_frame_size_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, default: tuple[int, int], help: str
) -> None:
    """A WIDTHxHEIGHT flag read as (height, width); the help gets the default appended."""
    height, width = default
    parser.add_argument(
        flag, type=frame_size, default=default, metavar="WxH", help=f"{help} (default: {width}x{height})"
    )


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= `minimum`; anything else is an error naming the bound."""
    wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
"""argparse type: an integer >= 1."""


def add_threads_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str = "CPU threads for the backend (default: one per core)",
) -> None:
    parser.add_argument("--threads", type=positive_int, metavar="N", help=help)


def add_verbosity_arguments(
    parser: argparse.ArgumentParser,
    quiet: str = "no progress bars",
    verbose: str = "show tracebacks",
) -> None:
    """-q/--quiet and -v/--verbose, with each tool's own account of what they change."""
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet)
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)


def setup_logging(verbose: bool, normal: int = logging.WARNING, detailed: int = logging.INFO) -> None:
    """Log at `detailed` under -v, else at `normal`, one line per record."""
    logging.basicConfig(level=detailed if verbose else normal, format="%(levelname)s %(message)s")


def name_list(allowed: Sequence[str], what: str) -> Callable[[str], tuple[str, ...]]:
    """argparse type: comma-separated names from `allowed`, in the given order, duplicates dropped."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        bad = [n for n in names if n not in allowed]
        if not names or bad:
            raise argparse.ArgumentTypeError(f"{what}: choose from {', '.join(allowed)}, comma-separated")
        return names

    return parse


# --------------------------------------------------------------------------- backend options


def _backend_option(text: str) -> tuple[str, Any]:
    try:
        return parse_backend_option(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


class _CollectOptions(argparse.Action):
    """Each KEY=VALUE into one dict (a later value for a key replaces an earlier one)."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, value: Any, option_string: Any = None) -> None:
        key, parsed = value
        setattr(namespace, self.dest, {**getattr(namespace, self.dest), key: parsed})


def add_backend_option_argument(parser: argparse.ArgumentParser) -> None:
    """--backend-option KEY=VALUE (repeatable) into `args.backend_options`, a dict; the keys,
    their values and where each applies are listed at the end of --help."""
    parser.add_argument(
        "--backend-option",
        dest="backend_options",
        type=_backend_option,
        action=_CollectOptions,
        default={},
        metavar="KEY=VALUE",
        help="set an option of one backend, repeatable; setting one runs only the backends and devices it "
        "applies to, so a GPU-only option on the CPU is an error (the keys are listed below)",
    )
    listing = "backend options (--backend-option KEY=VALUE):\n" + describe_options()
    parser.epilog = f"{parser.epilog}\n\n{listing}" if parser.epilog else listing


def options_setting(options: Mapping[str, Any]) -> dict[str, Any]:
    """{"backend_options": options} for a report's settings, {} when none is set: reports made
    without options keep exactly the settings they always had."""
    return {"backend_options": dict(options)} if options else {}


# --------------------------------------------------------------------------- reports


def measure_and_report(
    measure: Callable[[], Mapping[str, Any]],
    report: Callable[[Mapping[str, Any]], str],
    json_path: Path | None,
    verbose: bool,
) -> int:
    """A measuring tool's main body: run `measure`, write its result as JSON where asked, print
    `report(result)`; exit status 0, or 1 with one line (a traceback under -v) on an UnfoldError."""
    try:
        result = measure()
        if json_path:
            write_json_report(json_path, result)
    except UnfoldError as exc:
        return report_error(exc, verbose)
    print(report(result))
    return 0


def write_json_report(path: Path, result: Mapping[str, Any]) -> None:
    """`result` as indented JSON, written atomically; InputError when the file cannot be written."""
    try:
        atomic_write_bytes(path, (json.dumps(result, indent=2) + "\n").encode())
    except OSError as exc:
        raise InputError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
