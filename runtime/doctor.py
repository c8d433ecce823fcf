"""First-contact check of a machine: what to run first on a Jetson or a desktop GPU, and to attach
to a bug report.

    python runtime/doctor.py [--artifacts DIR] [--out report.json]

It reports the machine (Python, NumPy, OpenCV and whether it has GStreamer, TensorRT, pycuda,
torch, ONNX Runtime, the GPU, its compute capability and driver, JetPack's L4T release), then
checks the exported model on it: the export's reference frame is restored and compared with the
PyTorch FP32 output the export stored beside it (`manifest.reference`), with Polygraphy's output
comparison (max and mean abs diff), PSNR and NaN/Inf counts:

- ONNX Runtime on the CPU (a second opinion, where installed), in the main thread and in a
  worker thread, as the video loop runs inference; OpenVINO on the CPU where installed;
- TensorRT, where it and a GPU are present: FP16 engines built for the reference frame's size
  into a temporary copy of the artifacts (`export/build_engines.py --from-artifacts`, as a
  device owner would run it), then the same comparison in the main thread and in a worker thread
  (the CUDA context must follow the work into that thread);
- a short latency run (per graph and end to end) on the best backend that passed.

It ends with one line per check and writes the JSON report `{"checks": [{"name", "status":
"ok" | "failed" | "skipped", "reason", "details"}, ...]}` (default: doctor_report.json). A
skipped or failed check always has a reason. Exit status: 1 when a check failed, else 0.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from runtime import cli
from runtime.bench.measure import Settings, measure_cell
from runtime.doctor_checks import (
    Checks,
    Skip,
    compare,
    gpu_check,
    in_a_thread,
    l4t_check,
    module_check,
    opencv_check,
    python_check,
    reference_frames,
    tensorrt_check,
)
from runtime.errors import InputError
from runtime.manifest import Manifest, load_manifest
from runtime.pipeline import Pipeline, padded_size

FP32_ATOL = 1e-4  # what the export allows between ONNX Runtime and PyTorch
# FP32 on a GPU: PyTorch lets cuDNN run FP32 convolutions in TF32 by default (10-bit mantissa).
FP32_GPU_ATOL = 2e-3
FP16_ATOL = 0.05  # FP16 engines: a per-pixel bound, beside the PSNR floor below
FP16_MIN_PSNR_DB = 40.0  # the precision gate of the FP16 and INT8 variants
_GPU_PRECISION = {"tensorrt": "fp16", "torch": "fp32"}  # what each GPU backend is checked at
_MATCH_CHECK = {"onnxruntime": "onnxruntime.reference_match", "openvino": "openvino.reference_match",
                "tensorrt": "tensorrt.reference_match", "torch": "torch.cuda_reference_match"}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("doctor.py", __doc__)
    cli.add_artifacts_argument(p)
    p.add_argument(
        "--out", type=Path, default=Path("doctor_report.json"), metavar="PATH",
        help="where to write the JSON report (default: doctor_report.json)",
    )  # fmt: skip
    p.add_argument("--keep", type=Path, metavar="DIR", help="build the TensorRT engines here and keep them "
                   "(default: a temporary folder, removed at the end)")  # fmt: skip
    return p


class Doctor:
    """The checks in order; later ones skip (with the reason) when what they need did not pass."""

    def __init__(self, artifacts: Path, workdir: Path) -> None:
        self.artifacts, self.workdir = artifacts, workdir
        self.checks = Checks(echo=print)
        self.manifest: Manifest | None = None
        self.engines: Path | None = None
        self.reference: tuple[np.ndarray, np.ndarray] | None = None

    def run(self) -> Checks:
        c = self.checks
        c.run("environment.python", python_check)
        c.run("environment.numpy", module_check("numpy"))
        c.run("opencv.import", opencv_check)
        c.run("jetson.l4t", l4t_check)
        c.run("tensorrt.import", tensorrt_check)
        c.run("pycuda.import", module_check("pycuda", "pycuda"))
        c.run("torch.import", module_check("torch"))
        c.run("onnxruntime.import", module_check("onnxruntime"))
        c.run("openvino.import", module_check("openvino"))
        c.run("polygraphy.import", module_check("polygraphy"))
        c.run("cuda.device", gpu_check)
        c.run("artifacts.manifest", self._load)
        c.run("artifacts.reference", self._reference)
        c.run("onnxruntime.reference_match", lambda: self._match("onnxruntime", "cpu", "fp32", threaded=False))
        c.run("onnxruntime.thread_match", lambda: self._match("onnxruntime", "cpu", "fp32", threaded=True))
        c.run("openvino.reference_match", lambda: self._match("openvino", "cpu", "fp32", threaded=False))
        c.run("tensorrt.build_fp16", self._build_engines)
        c.run("tensorrt.reference_match", lambda: self._match("tensorrt", "cuda", "fp16", threaded=False))
        c.run("torch.cuda_reference_match", lambda: self._match("torch", "cuda", "fp32", threaded=False))
        gpu = next((b for b in ("tensorrt", "torch") if c.passed(_MATCH_CHECK[b])), None)
        c.run("cuda.thread_context", lambda: self._gpu_thread_check(gpu))
        best = gpu or "onnxruntime"
        c.run(f"latency.{best}", lambda: self._latency(best))
        return c

    def _gpu_thread_check(self, backend: str | None) -> dict[str, Any]:
        """The GPU pipeline opened in this thread and run in another (the CUDA context must follow)."""
        if backend is None:
            raise Skip("no GPU backend matched the reference (see tensorrt.* and torch.cuda_reference_match)")
        return {"backend": backend, **self._match(backend, "cuda", _GPU_PRECISION[backend], threaded=True)}

    # ------------------------------------------------------------------ the artifacts

    def _load(self) -> dict[str, Any]:
        self.manifest = load_manifest(self.artifacts, verify=True)
        return {"artifacts": str(self.artifacts), "name": self.manifest.name, "graphs": len(self.manifest.graphs)}

    def _reference(self) -> dict[str, Any]:
        self.checks.require("artifacts.manifest")
        assert self.manifest is not None
        self.reference = reference_frames(self.manifest)
        frame = self.reference[0]
        return {"frame": f"{frame.shape[2]}x{frame.shape[1]}"}

    def _match(self, backend: str, device: str, precision: str, threaded: bool) -> dict[str, Any]:
        self.checks.require("artifacts.reference")
        self.checks.require("polygraphy.import")
        self.checks.require(f"{backend}.import")
        if device == "cuda":
            self.checks.require("cuda.device")
        if backend == "tensorrt":
            self.checks.require("tensorrt.build_fp16")
        assert self.reference is not None and self.manifest is not None
        if backend == "torch" and any(g.torch_program is None for g in self.manifest.graphs.values()):
            raise Skip("these artifacts have no torch programs (exported with --no-torch-programs)")
        frame, expected = self.reference
        folder = self.engines if backend == "tensorrt" else self.artifacts
        with Pipeline.from_manifest(folder, backend=backend, device=device, precision=precision) as pipeline:
            main = pipeline.restore_batch(frame)
            if not threaded:
                return self._compared(main, expected, precision, device)
            other = in_a_thread(lambda: pipeline.restore_batch(frame))
        details = self._compared(other, expected, precision, device)
        return {**details, "max_abs_diff_to_main_thread": float(np.abs(other - main).max())}

    @staticmethod
    def _compared(restored: np.ndarray, expected: np.ndarray, precision: str, device: str) -> dict[str, Any]:
        if precision == "fp32":
            return compare(restored, expected, FP32_ATOL if device == "cpu" else FP32_GPU_ATOL)
        details = compare(restored, expected, FP16_ATOL)
        if details["psnr_db"] < FP16_MIN_PSNR_DB:
            raise AssertionError(f"{precision} PSNR {details['psnr_db']:.2f} dB < {FP16_MIN_PSNR_DB} dB against FP32")
        return details

    # ------------------------------------------------------------------ the GPU

    def _build_engines(self) -> dict[str, Any]:
        self.checks.require("tensorrt.import")
        self.checks.require("cuda.device")
        self.checks.require("artifacts.reference")
        assert self.manifest is not None and self.reference is not None
        height, width = padded_size(*self.reference[0].shape[1:3], self.manifest.pad_multiple, self.manifest.min_size)
        target = self.workdir / "artifacts"
        shutil.copytree(self.artifacts, target, dirs_exist_ok=True)
        command = [
            sys.executable, str(cli.REPO / "export" / "build_engines.py"), "--from-artifacts", str(target),
            "--precision", "fp16", "--sizes", f"{width}x{height}", "-q",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: " + " | ".join(said))
        built = load_manifest(target, verify=True)
        if not any(e.precision == "fp16" for e in built.engines):
            raise RuntimeError(f"{' '.join(command)} wrote no fp16 engine: {done.stdout.strip()[-300:]}")
        self.engines = target
        return {"engines": len(built.engines), "size": f"{width}x{height}", "folder": str(target)}

    def _latency(self, backend: str) -> dict[str, Any]:
        self.checks.require("artifacts.reference")
        device = "cpu" if backend == "onnxruntime" else "cuda"
        self.checks.require(_MATCH_CHECK[backend])
        assert self.reference is not None
        precision = _GPU_PRECISION.get(backend, "fp32")
        folder = self.engines if backend == "tensorrt" else self.artifacts
        _, height, width, _ = self.reference[0].shape
        settings = Settings((backend,), (device,), (precision,), ((height, width),), warmup=2, iters=5)
        with Pipeline.from_manifest(folder, backend=backend, device=device, precision=precision) as pipeline:
            cell = measure_cell(pipeline, height, width, settings, progress=False)
        per_graph = {g: round(s["per_frame_ms"], 3) for g, s in cell["graphs"].items()}
        return {"frame": f"{width}x{height}", "end_to_end_ms": cell["end_to_end"]["mean_ms"], "per_graph_ms": per_graph}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        checks = Doctor(args.artifacts, args.keep).run()
    else:
        with tempfile.TemporaryDirectory(prefix="unfoldldm-doctor-") as workdir:
            checks = Doctor(args.artifacts, Path(workdir)).run()
    try:
        cli.write_json_report(args.out, checks.to_dict())
    except InputError as exc:
        print(f"doctor: {exc}", file=sys.stderr)
        return 1
    counts = {s: sum(r.status == s for r in checks.results) for s in ("ok", "skipped", "failed")}
    print(f"doctor: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed; report: {args.out}")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
