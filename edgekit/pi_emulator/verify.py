"""``verify_pi_build``: run a Pi build's own ``run.py`` on emulated aarch64 and compare with the host.

Each *leg* runs the build's runner with one runtime and one kind of kernels
under ``qemu-aarch64-static`` on the target's CPU, and is compared byte for
byte with the same runtime and kernels on the x86 host (like with like:
LiteRT's XNNPACK against XNNPACK, reference kernels against reference
kernels; LiteRT's builtin kernels without delegates differ by a few LSB
between aarch64 and x86, so they are never compared across architectures):

- ``litert``: ai-edge-litert, default kernels (XNNPACK), what a Pi runs.
  XNNPACK's kernels agree bit for bit; ops XNNPACK leaves to LiteRT's builtin
  optimized kernels may not: int8 SOFTMAX differs by 1 LSB on a few inputs
  (measured: 1 to 11 of 597 digits inputs, top-1 unchanged), so a model ending
  in SOFTMAX can show ``bit_exact`` just under 1.0 on this leg while the
  reference-kernel legs stay at 1.0;
- ``litert-ref``: ai-edge-litert, reference kernels;
- ``tflite_runtime``: the runner's fallback, tflite-runtime 2.14 with
  numpy<2, reference kernels, against the same wheel on the host (and, for
  information, against the host's LiteRT reference kernels).

Latency figures are emulated (QEMU on the build host): they are not Pi benchmarks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputError, VerificationError
from edgekit.pi_emulator.root import QEMU_INSTALL_HINT, check_cpu, ensure_root, host_site, require_tool
from edgekit.pi_emulator.run import QEMU_USER, RunnerResult, run_runner
from edgekit.sequences import calls_per_sequence, flatten_calls

# leg name -> (runtime the runner imports, reference kernels?)
LEG_KERNELS = {"litert": ("litert", False), "litert-ref": ("litert", True), "tflite_runtime": ("tflite_runtime", True)}
LATENCY_NOTE = "emulated: qemu-aarch64 user mode on the build host, single thread; not a Raspberry Pi benchmark"


@dataclass(frozen=True)
class LegResult:
    """One runtime leg: the emulated runner against the host running the same runtime and kernels."""

    leg: str
    runtime: str
    runtime_version: str | None
    kernels: str  # "default" (XNNPACK) or "reference"
    reference: str  # what the host ran for the comparison
    bit_exact: float  # fraction of output bytes equal to the host's
    max_abs_diff: float  # in raw output units (LSB for int8)
    mismatched_inputs: int
    accuracy: float | None
    host_accuracy: float | None
    emulated_latency_ms: float
    wall_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EmulatorResult:
    """``report.json``'s ``emulator`` section for a Pi build (emulated aarch64, not a Pi benchmark)."""

    machine: str  # e.g. "qemu-aarch64:cortex-a72"
    runtime: str
    outputs_bit_exact: float  # fraction of output bytes equal to the host, same runtime and kernels, all legs
    accuracy: float | None  # top-1 of the first leg on the eval labels, None without labels
    host_accuracy: float | None
    emulated_latency_ms: float
    n_inputs: int
    inputs: str  # "eval" or "generated (seed N)"
    mismatched_inputs: int
    legs: tuple[LegResult, ...]
    emulated: bool = True
    latency_note: str = LATENCY_NOTE
    qemu: str = ""
    task: str = "classification"  # the build's task (report.json task.name)
    task_metrics: dict[str, Any] | None = None  # the task's metrics on the first leg's outputs (eval data only)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["legs"] = [leg.to_dict() for leg in self.legs]
        return d


def _read_build(build_dir: Path) -> tuple[dict[str, Any], Path, Path]:
    build_dir = Path(build_dir)
    report_path, model, runner = build_dir / "report.json", build_dir / "model.tflite", build_dir / "run.py"
    for p in (report_path, model, runner):
        if not p.is_file():
            raise InputError(f"{p}: not found", "pass a folder written by `edgekit build --target rpi4` (or another Pi target)")
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{report_path}: not valid JSON ({exc.msg})") from None
    return report, model, runner


def _emulated_cpu(report: dict[str, Any], where: Path) -> tuple[str, str]:
    target = report.get("target") or {}
    emulator = target.get("emulator") or {}
    if emulator.get("kind") != "qemu-user":
        raise InputError(f"{where}: target {target.get('name')!r} has no qemu-user emulator",
                         "Pi targets need [emulator] kind = \"qemu-user\", machine = \"qemu-aarch64\" and a cpu")
    cpu = check_cpu(emulator.get("cpu"))
    return cpu, f"{emulator.get('machine') or 'qemu-aarch64'}:{cpu}"


def _inputs(report: dict[str, Any], model: Path, n_inputs: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    from edgekit.tflite_model import read_model

    eval_path = (report.get("inputs") or {}).get("eval")
    if eval_path:
        if not Path(eval_path).is_file():
            raise InputError(f"{eval_path}: the build's eval data is gone", "rebuild, or restore the file report.json names")
        from edgekit.data import load_data, take
        from edgekit.verify.inputs import is_raw

        ds = take(load_data(eval_path, "eval"), n_inputs)  # .npy, one-hot labels: as the build read them
        spec = read_model(model).inputs[0]
        source_dtype = spec.dtype if report.get("model_kind") == "tflite" else "float32"
        x = ds.x
        if np.issubdtype(x.dtype, np.integer) and not is_raw(x, spec, data_is_quantized=bool(report.get("data_is_quantized")),
                                                            source_dtype=source_dtype):
            x = x.astype(np.float32)  # integer data are values: the runner quantizes them like floats
        return x, ds.y, "eval"
    spec = read_model(model).inputs[0]
    shape = (n_inputs, *spec.shape[1:])
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
    else:
        x = rng.random(shape, dtype=np.float32).astype(dtype)
    return x, None, f"generated (seed {seed})"


def _host_tflite_runtime(runner: Path, model: Path, inputs: Path, work: Path) -> np.ndarray:
    """The runner with tflite-runtime's reference kernels on the host (a subprocess: it needs numpy<2)."""
    out = work / "host-tflite_runtime-ref.npy"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(host_site("tflite_runtime")), "PYTHONNOUSERSITE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-s", str(runner), str(inputs), "--model", str(model), "--raw", "--output", str(out),
                           "--runtime", "tflite_runtime", "--reference-kernels", "--json"],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no stderr"])[-1][:300]
        raise VerificationError(f"{runner} with tflite_runtime failed on the host: {last}")
    return np.load(out, allow_pickle=False)


def verify_pi_build(build_dir: Path, *, legs: tuple[str, ...] = ("litert",), n_inputs: int = 100, seed: int = 0) -> EmulatorResult:
    """Run a Pi build's ``run.py`` under ``qemu-aarch64-static`` and compare every output byte with the host.

    Uses up to ``n_inputs`` samples of the build's eval data (float inputs go
    through the runner's own quantization; labels give accuracy), else
    ``n_inputs`` seeded generated inputs. Inputs and outputs land in
    ``build_dir/emulator/``. Mismatches are reported, not raised.

    Raises InputError (not a Pi build, unknown leg or CPU, missing eval data),
    ToolchainError (QEMU, apt or a download missing or failing) or
    VerificationError (the runner failed under emulation).
    """
    from edgekit.verify import metrics
    from edgekit.verify.runtimes import run_litert
    from edgekit.verify.inputs import quantize
    from edgekit.tflite_model import read_model

    build_dir = Path(build_dir)
    report, model, runner = _read_build(build_dir)
    if report.get("shipped"):  # run what ships: the model and run.py as the build wrote them
        from edgekit.verify.shipped import check_files

        check_files(build_dir, report["shipped"])
    for leg in legs:
        if leg not in LEG_KERNELS:
            raise InputError(f"unknown Pi verification leg {leg!r}; choose from {', '.join(LEG_KERNELS)}")
    if not legs:
        raise InputError("no Pi verification leg chosen", f"choose from {', '.join(LEG_KERNELS)}")
    if n_inputs < 1:
        raise InputError(f"--inputs must be at least 1, not {n_inputs}")
    cpu, machine = _emulated_cpu(report, build_dir / "report.json")
    require_tool(QEMU_USER, QEMU_INSTALL_HINT)  # before downloading a root it could not run
    x, y, source = _inputs(report, model, n_inputs, seed)
    work = build_dir / "emulator"
    work.mkdir(exist_ok=True)
    inputs = work / "inputs.npz"
    np.savez(inputs, **({"x": x} if y is None else {"x": x, "y": y}))

    tflite = model.read_bytes()
    spec = read_model(tflite).inputs[0]
    x_q = x if x.dtype == np.dtype(spec.dtype) else quantize(x, spec)  # as the runner does: codes pass, values are quantized
    calls = calls_per_sequence(x_q.shape, spec.shape)  # [N, T, ...]: sequences of T calls, as run.py runs them
    root = ensure_root(legs=tuple(dict.fromkeys(LEG_KERNELS[leg][0] for leg in legs)), cpus=(cpu,))
    host_cache: dict[str, np.ndarray] = {}

    def host(label: str) -> np.ndarray:
        if label not in host_cache:
            if label == "tflite_runtime-ref":
                host_cache[label] = _host_tflite_runtime(runner, model, inputs, work)
            else:
                o = run_litert(tflite, flatten_calls(x_q, calls), reference=label == "litert-ref", calls_per_sequence=calls)
                host_cache[label] = o if calls is None else o.reshape(len(x_q), calls, *o.shape[1:])
        return host_cache[label]

    results: list[LegResult] = []
    compared_bytes: list[int] = []
    first_outputs: np.ndarray | None = None
    for leg in legs:
        runtime, reference = LEG_KERNELS[leg]
        emulated: RunnerResult = run_runner(runner, model, inputs, cpu=cpu, leg=runtime, reference=reference, root=root, work=work)
        label = f"{runtime}-{'ref' if reference else 'default'}"
        expected = host(label)
        first_outputs = emulated.outputs if first_outputs is None else first_outputs
        agree = metrics.byte_agreement(emulated.outputs, expected)
        exact, diff, mismatched = agree.bit_exact, agree.max_abs_diff, agree.mismatched_inputs
        compared_bytes.append(int(expected.nbytes))
        extra: dict[str, Any] = {}
        if runtime == "tflite_runtime":
            vs = metrics.byte_agreement(emulated.outputs, host("litert-ref"))
            vs_exact, vs_diff = vs.bit_exact, vs.max_abs_diff
            extra = {"vs_litert_ref_bit_exact": vs_exact, "vs_litert_ref_max_abs_diff": vs_diff}
        results.append(LegResult(
            leg=leg, runtime=emulated.runtime, runtime_version=emulated.runtime_version, kernels=emulated.kernels,
            reference=f"{label} (x86-64 host)", bit_exact=exact, max_abs_diff=diff, mismatched_inputs=mismatched,
            accuracy=emulated.accuracy, host_accuracy=metrics.accuracy(expected if calls is None else expected[:, -1], y),
            emulated_latency_ms=emulated.mean_latency_ms, wall_seconds=round(emulated.wall_seconds, 3), extra=extra,
        ))
    equal_bytes = sum(r.bit_exact * n for r, n in zip(results, compared_bytes))
    all_bytes = sum(compared_bytes)
    first = results[0]
    task = (report.get("task") or {}).get("name") or "classification"
    task_metrics = None
    if source == "eval" and first_outputs is not None:
        from edgekit.verify.runtimes import dequantize

        out = read_model(tflite).outputs[0]
        x_real = dequantize(x_q, spec) if report.get("data_is_quantized") else np.asarray(x, np.float32)
        o = np.asarray(first_outputs)
        o = o if calls is None else o.reshape(len(x), calls, -1)[:, -1]  # a sequence is judged on its last call
        real = dequantize(o, out).reshape(len(x), *out.shape[1:])
        task_metrics = metrics.task_metrics(task, real, x_real, y)
    return EmulatorResult(
        machine=machine,
        runtime=f"{first.runtime}-{'ref' if first.kernels == 'reference' else 'default'} (emulated aarch64)",
        outputs_bit_exact=equal_bytes / all_bytes if all_bytes else 1.0,
        accuracy=first.accuracy,
        host_accuracy=first.host_accuracy,
        emulated_latency_ms=first.emulated_latency_ms,
        n_inputs=int(len(x)),
        inputs=source,
        mismatched_inputs=sum(r.mismatched_inputs for r in results),
        legs=tuple(results),
        qemu=_qemu_version(),
        task=task,
        task_metrics=task_metrics,
    )


def _qemu_version() -> str:
    try:
        out = subprocess.run([QEMU_USER, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return ""
    return (out.strip().splitlines() or [""])[0]
