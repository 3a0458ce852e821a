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
    task_outputs: list[dict[str, Any]] | None = None  # several outputs: per output its name, index, task and metrics

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


def _inputs(report: dict[str, Any], model: Path, n_inputs: int,
            seed: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray | None, ...], str]:
    """One array per model input, one label array (or None) per output, and where they came from."""
    from edgekit.tflite_model import read_model

    info = read_model(model)
    eval_path = (report.get("inputs") or {}).get("eval")
    if eval_path:
        if not Path(eval_path).is_file():
            raise InputError(f"{eval_path}: the build's eval data is gone", "rebuild, or restore the file report.json names")
        from edgekit.data import load_data, take
        from edgekit.verify.inputs import is_raw

        tasks = [o.get("name", "classification") for o in (report.get("task") or {}).get("outputs") or []]
        # .npy, one-hot labels, several inputs and outputs: as the build read them
        ds = take(load_data(eval_path, "eval", tasks or "classification", [t.name for t in info.inputs],
                            [t.name for t in info.outputs]), n_inputs)
        is_tflite = report.get("model_kind") == "tflite"
        xs = []
        for x, spec in zip(ds.xs, info.inputs):
            src = spec.dtype if is_tflite else "float32"
            if np.issubdtype(x.dtype, np.integer) and not is_raw(x, spec, data_is_quantized=bool(report.get("data_is_quantized")),
                                                                source_dtype=src):
                x = x.astype(np.float32)  # integer data are values: the runner quantizes them like floats
            xs.append(x)
        return tuple(xs), ds.ys, "eval"
    rng = np.random.default_rng(seed)
    xs = []
    for spec in info.inputs:
        shape = (n_inputs, *spec.shape[1:])
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.integer):
            lim = np.iinfo(dtype)
            xs.append(rng.integers(lim.min, lim.max + 1, size=shape).astype(dtype))
        else:
            xs.append(rng.random(shape, dtype=np.float32).astype(dtype))
    return tuple(xs), (None,) * len(info.outputs), f"generated (seed {seed})"


def _save_inputs(path: Path, xs: tuple[np.ndarray, ...], ys: tuple[np.ndarray | None, ...]) -> None:
    """The runner's input file: ``x``/``y`` for a one-input, one-output model, else ``x0``.../``y0``..."""
    if len(xs) == 1 and len(ys) == 1:
        np.savez(path, **({"x": xs[0]} if ys[0] is None else {"x": xs[0], "y": ys[0]}))
        return
    arrays = {f"x{i}": x for i, x in enumerate(xs)}
    arrays.update({f"y{j}": y for j, y in enumerate(ys) if y is not None})
    np.savez(path, **arrays)


def _host_tflite_runtime(runner: Path, model: Path, inputs: Path, work: Path) -> tuple[np.ndarray, ...]:
    """The runner with tflite-runtime's reference kernels on the host (a subprocess: it needs numpy<2)."""
    out = work / "host-tflite_runtime-ref.npy"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(host_site("tflite_runtime")), "PYTHONNOUSERSITE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-s", str(runner), str(inputs), "--model", str(model), "--raw", "--output", str(out),
                           "--runtime", "tflite_runtime", "--reference-kernels", "--json"],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no stderr"])[-1][:300]
        raise VerificationError(f"{runner} with tflite_runtime failed on the host: {last}")
    loaded = np.load(out, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return (loaded,)
    with loaded:
        return tuple(loaded[f"out{j}"] for j in range(len(loaded.files)))


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
    from edgekit.verify.runtimes import run_litert_io
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
    xs, ys, source = _inputs(report, model, n_inputs, seed)
    work = build_dir / "emulator"
    work.mkdir(exist_ok=True)
    inputs = work / "inputs.npz"
    _save_inputs(inputs, xs, ys)

    tflite = model.read_bytes()
    specs = read_model(tflite).inputs
    spec = specs[0]
    # as the runner does: codes pass, values are quantized
    x_q = tuple(x if x.dtype == np.dtype(sp.dtype) else quantize(x, sp) for x, sp in zip(xs, specs))
    # [N, T, ...]: sequences of T calls, as run.py runs them (one input and one output only: data.py refuses them otherwise)
    calls = calls_per_sequence(x_q[0].shape, spec.shape) if len(xs) == len(ys) == 1 else None
    root = ensure_root(legs=tuple(dict.fromkeys(LEG_KERNELS[leg][0] for leg in legs)), cpus=(cpu,))
    host_cache: dict[str, tuple[np.ndarray, ...]] = {}

    def host(label: str) -> tuple[np.ndarray, ...]:
        if label not in host_cache:
            if label == "tflite_runtime-ref":
                host_cache[label] = _host_tflite_runtime(runner, model, inputs, work)
            else:
                o = run_litert_io(tflite, tuple(flatten_calls(x, calls) for x in x_q), reference=label == "litert-ref",
                                  calls_per_sequence=calls)
                host_cache[label] = o if calls is None else tuple(a.reshape(len(x_q[0]), calls, *a.shape[1:]) for a in o)
        return host_cache[label]

    results: list[LegResult] = []
    compared_bytes: list[int] = []
    first_outputs: tuple[np.ndarray, ...] | None = None
    for leg in legs:
        runtime, reference = LEG_KERNELS[leg]
        emulated: RunnerResult = run_runner(runner, model, inputs, cpu=cpu, leg=runtime, reference=reference, root=root, work=work)
        label = f"{runtime}-{'ref' if reference else 'default'}"
        expected = host(label)
        first_outputs = emulated.outputs if first_outputs is None else first_outputs
        agree = metrics.byte_agreement(metrics.join_outputs(emulated.outputs), metrics.join_outputs(expected))
        exact, diff, mismatched = agree.bit_exact, agree.max_abs_diff, agree.mismatched_inputs
        compared_bytes.append(int(sum(e.nbytes for e in expected)))
        extra: dict[str, Any] = {}
        if runtime == "tflite_runtime":
            vs = metrics.byte_agreement(metrics.join_outputs(emulated.outputs), metrics.join_outputs(host("litert-ref")))
            vs_exact, vs_diff = vs.bit_exact, vs.max_abs_diff
            extra = {"vs_litert_ref_bit_exact": vs_exact, "vs_litert_ref_max_abs_diff": vs_diff}
        results.append(LegResult(
            leg=leg, runtime=emulated.runtime, runtime_version=emulated.runtime_version, kernels=emulated.kernels,
            reference=f"{label} (x86-64 host)", bit_exact=exact, max_abs_diff=diff, mismatched_inputs=mismatched,
            accuracy=emulated.accuracy,
            host_accuracy=metrics.accuracy(expected[0] if calls is None else expected[0][:, -1], ys[0]) if len(expected) == 1 else None,
            emulated_latency_ms=emulated.mean_latency_ms, wall_seconds=round(emulated.wall_seconds, 3), extra=extra,
        ))
    equal_bytes = sum(r.bit_exact * n for r, n in zip(results, compared_bytes))
    all_bytes = sum(compared_bytes)
    first = results[0]
    task = (report.get("task") or {}).get("name") or "classification"
    tasks = [o.get("name") or "classification" for o in (report.get("task") or {}).get("outputs") or []] or [task]
    task_metrics, task_outputs = None, None
    if source == "eval" and first_outputs is not None:
        from edgekit.verify.runtimes import dequantize

        n = len(xs[0])
        x_real = dequantize(x_q[0], spec) if report.get("data_is_quantized") else np.asarray(xs[0], np.float32)
        per_output = []
        for t, o, out, y in zip(tasks, first_outputs, read_model(tflite).outputs, ys):
            o = np.asarray(o)
            o = o if calls is None else o.reshape(n, calls, -1)[:, -1]  # a sequence is judged on its last call
            per_output.append(metrics.task_metrics(t, dequantize(o, out).reshape(n, *out.shape[1:]), x_real, y))
        if len(per_output) > 1:
            task_outputs = [{"output": out.name, "index": j, "task": t, "metrics": m}
                            for j, (out, t, m) in enumerate(zip(read_model(tflite).outputs, tasks, per_output))]
        else:
            task_metrics = per_output[0]
    return EmulatorResult(
        machine=machine,
        runtime=f"{first.runtime}-{'ref' if first.kernels == 'reference' else 'default'} (emulated aarch64)",
        outputs_bit_exact=equal_bytes / all_bytes if all_bytes else 1.0,
        accuracy=first.accuracy,
        host_accuracy=first.host_accuracy,
        emulated_latency_ms=first.emulated_latency_ms,
        n_inputs=int(len(xs[0])),
        inputs=source,
        mismatched_inputs=sum(r.mismatched_inputs for r in results),
        legs=tuple(results),
        qemu=_qemu_version(),
        task=task,
        task_metrics=task_metrics,
        task_outputs=task_outputs,
    )


def _qemu_version() -> str:
    try:
        out = subprocess.run([QEMU_USER, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return ""
    return (out.strip().splitlines() or [""])[0]
