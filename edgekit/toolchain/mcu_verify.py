"""Run a model's generated C on the emulated microcontroller and compare with TFLM.

:func:`run_on_emulator` is the low-level step (code generation if needed,
cross-compile, QEMU run, device measurements); :func:`verify_mcu_build` is what
``edgekit verify BUILD_DIR --emulator`` calls for a tflm target: it runs the
build's eval data (or seeded generated inputs) on QEMU and on the tflite-micro
interpreter and reports how many output bytes agree.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputError, ToolchainError, VerificationError
from edgekit.sequences import calls_per_sequence, flatten_calls, last_calls
from edgekit.targets import Emulator, TargetProfile, Toolchain, get_target
from edgekit.tflite_model import TensorSpec, read_model
from edgekit.toolchain.cross import FirmwareImage, build_firmware
from edgekit.toolchain.qemu import run_firmware

INSTRUCTION_COUNTER = "qemu-tcg-plugin (executed guest instructions, exact)"
IO_IN, IO_OUT = ("int8", "int16"), ("int8", "int16", "int32")  # what the harness and generated C take


@dataclass(frozen=True)
class DeviceMeasurements:
    """What the emulated device measured for one firmware image.

    ``ram_bytes`` is ``.data + .bss`` (the arena, the I/O buffers and any
    static state) plus the stack high-water mark found by stack painting.
    ``instructions_per_inference`` is the mean over the inputs run (None when
    QEMU has no plugin support); min and max show the spread.
    """

    machine: str
    runtime: str
    flash_bytes: int
    ram_bytes: int
    static_ram_bytes: int
    stack_bytes: int
    arena_bytes: int | None
    instructions_per_inference: int | None
    instructions_min: int | None
    instructions_max: int | None
    instruction_counter: str | None
    sections: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EmulatorResult:
    """``report.json``'s ``emulator`` section: the model run on QEMU and compared with the TFLM interpreter."""

    machine: str
    runtime: str
    outputs_bit_exact: float  # fraction of output bytes equal to the tflite-micro interpreter's
    accuracy: float | None  # top-1 on the eval labels, None without labels
    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
    instructions_per_inference: int | None
    n_inputs: int
    inputs: str  # "eval" or "generated (seed N)"
    reference: str = "tflm-host"
    mismatched_inputs: int = 0
    tflm_accuracy: float | None = None
    device: DeviceMeasurements | None = None
    code: str = ""  # which C ran: the build's aot/ as shipped, or generated from model.tflite
    shipped_hashes: str = ""
    task: str = "classification"  # the build's task (report.json task.name)
    task_metrics: dict[str, Any] | None = None  # the task's metrics on the emulator's outputs (eval data only)
    calls_per_sequence: int | None = None  # a model with state ran sequences of this many calls (reset between)
    task_outputs: list[dict[str, Any]] | None = None  # several outputs: per output its name, index, task and metrics

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _header_define(header: Path, name: str) -> int:
    m = re.search(rf"#define\s+{name}\s+\(?\s*(\d+)", header.read_text())
    if m is None:
        raise ToolchainError(f"{header}: no #define {name}", "the generated code does not follow edgekit's header contract")
    return int(m.group(1))


def _codegen(tflite: bytes | Path, out_dir: Path) -> Path:
    try:
        from edgekit.aot.codegen import generate
    except ImportError as exc:
        raise ToolchainError(f"edgekit's C code generator is not available ({exc})") from None
    generate(tflite, out_dir)
    return out_dir


def run_on_emulator(
    tflite_or_codegen_dir: bytes | Path,
    target: TargetProfile,
    inputs: np.ndarray,
    work_dir: Path,
    *,
    timeout_s: float | None = None,
    calls_per_sequence: int | None = None,
) -> tuple[np.ndarray, DeviceMeasurements]:
    """Run ``inputs`` (one row per inference, in the model's input dtype) through the model on ``target``'s QEMU machine.

    Rows are int8 values, or int16 / int32 / float32 arrays for a model with such an input
    (passed as their bytes). A model with state is reset before each row, or with
    ``calls_per_sequence=T`` before every T rows (sequences of calls, as
    :func:`edgekit.tflm_host.run_tflm`).

    ``tflite_or_codegen_dir`` is a ``.tflite`` (bytes or path; C code is
    generated into ``work_dir/codegen``) or a folder that already holds
    ``edgekit_model.h`` and its ``.c`` files. Returns the raw int8 outputs,
    shape ``[N, EDGEKIT_OUTPUT_BYTES]`` (view them as the output's dtype), and the device's measurements.
    Raises BudgetError when the firmware does not fit the target, ToolchainError
    when a tool is missing or the firmware fails.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    src = tflite_or_codegen_dir
    if isinstance(src, (str, Path)) and Path(src).is_dir():
        codegen_dir = Path(src)
    else:
        codegen_dir = _codegen(src if isinstance(src, bytes) else Path(src), work_dir / "codegen")
    header = codegen_dir / "edgekit_model.h"
    in_bytes, out_bytes = _header_define(header, "EDGEKIT_INPUT_BYTES"), _header_define(header, "EDGEKIT_OUTPUT_BYTES")
    x = np.asarray(inputs)
    wide = x.dtype in (np.int16, np.int32, np.float32)  # passed as their bytes; anything else holds int8 values
    x = np.ascontiguousarray(x if wide else x.astype(np.int8)).reshape(len(x), -1)
    x = x.view(np.int8) if wide else x
    if x.shape[1] != in_bytes:
        raise InputError(f"inputs have {x.shape[1]} bytes per sample; the model takes {in_bytes}")
    image = build_firmware(codegen_dir, target, work_dir / "firmware")
    run_dir = work_dir / "run"
    run_dir.mkdir(exist_ok=True)
    x.tofile(run_dir / "input.bin")
    (run_dir / "sequence.bin").unlink(missing_ok=True)
    if calls_per_sequence:
        if len(x) % calls_per_sequence:
            raise InputError(f"{len(x)} inputs are not whole sequences of {calls_per_sequence} calls")
        np.array([calls_per_sequence], dtype="<u4").tofile(run_dir / "sequence.bin")
    (run_dir / "output.bin").unlink(missing_ok=True)
    run = run_firmware(
        image.elf, target.emulator.machine, run_dir,
        marks=(image.mark_begin, image.mark_end), timeout_s=timeout_s or 120.0 + 2.0 * len(x),
    )
    outputs = np.fromfile(run_dir / "output.bin", dtype=np.int8)
    if outputs.size != len(x) * out_bytes:
        raise ToolchainError(f"{run_dir / 'output.bin'}: {outputs.size} bytes, expected {len(x) * out_bytes}")
    return outputs.reshape(len(x), out_bytes), _measurements(image, run, codegen_dir, len(x))


def _measurements(image: FirmwareImage, run, codegen_dir: Path, n: int) -> DeviceMeasurements:
    counts = run.instructions_per_inference if len(run.instructions_per_inference) == n else []
    try:
        arena = _header_define(codegen_dir / "edgekit_model.h", "EDGEKIT_ARENA_BYTES")
    except ToolchainError:
        arena = None
    return DeviceMeasurements(
        machine=run.machine,
        runtime=f"edgekit-qemu:{run.machine}",
        flash_bytes=image.flash_bytes,
        ram_bytes=image.static_ram_bytes + run.stack_bytes,
        static_ram_bytes=image.static_ram_bytes,
        stack_bytes=run.stack_bytes,
        arena_bytes=arena,
        instructions_per_inference=round(sum(counts) / len(counts)) if counts else None,
        instructions_min=min(counts) if counts else None,
        instructions_max=max(counts) if counts else None,
        instruction_counter=INSTRUCTION_COUNTER if counts else None,
        sections=dict(image.sections),
    )


def io_quantization(tflite: bytes) -> tuple[TensorSpec, TensorSpec]:
    """The model's first input and first output: shape, dtype, scale, zero point (from the flatbuffer)."""
    info = read_model(tflite)
    return info.inputs[0], info.outputs[0]


def generated_inputs(n: int, input_bytes: int, seed: int, dtype: str = "int8") -> np.ndarray:
    """``n`` seeded inputs uniform over ``dtype``'s range (int8 or int16), ``input_bytes`` bytes each."""
    info = np.iinfo(dtype)
    size = input_bytes // info.dtype.itemsize
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=(n, size), dtype=np.int64).astype(info.dtype)


def _target_from_report(d: dict[str, Any]) -> TargetProfile:
    try:
        return get_target(d["name"])
    except InputError:
        pass
    d = dict(d)
    if d.get("toolchain"):
        d["toolchain"] = Toolchain(**d["toolchain"])
    if d.get("emulator"):
        d["emulator"] = Emulator(**d["emulator"])
    return TargetProfile(**d)


def verify_mcu_build(build_dir: Path, *, n_inputs: int = 100, seed: int = 0) -> EmulatorResult:
    """Run a tflm build's shipped C on its target's QEMU machine and compare every output byte with TFLM.

    The files are first checked against the SHA-256 hashes ``report.json``
    recorded (VerificationError naming the first changed file). A build with
    ``aot/`` is compiled as shipped; one without gets C generated from its
    ``model.tflite`` into ``build_dir/emulator/codegen``. Uses up to
    ``n_inputs`` samples of the build's eval data (.npz or .npy, brought into
    the model's input domain as the build did; labels give accuracy), else
    ``n_inputs`` seeded generated inputs. int8 and int16 (int16x8) I/O run; the
    agreement counts output bytes. The tflite-micro reference runs in a child process.
    """
    from edgekit.data import load_data, take
    from edgekit.verify.inputs import to_input_domain
    from edgekit.verify.isolated import Leg, run_legs
    from edgekit.verify.metrics import byte_agreement, join_outputs
    from edgekit.verify.shipped import check_files

    build_dir = Path(build_dir)
    report_path, tflite_path = build_dir / "report.json", build_dir / "model.tflite"
    for p in (report_path, tflite_path):
        if not p.is_file():
            raise InputError(f"{p}: not found", "pass a folder written by `edgekit build`")
    report = json.loads(report_path.read_text())
    target = _target_from_report(report["target"])
    if not target.is_mcu:
        raise InputError(f"{build_dir}: target {target.name} is not a microcontroller", "--emulator is for tflm targets")
    shipped = report.get("shipped")
    if shipped:
        check_files(build_dir, shipped)
    tflite = tflite_path.read_bytes()
    info = read_model(tflite)
    inp, out = info.inputs[0], info.outputs[0]
    bad = [t for t in info.inputs if t.dtype not in IO_IN] + [t for t in info.outputs if t.dtype not in IO_OUT]
    if bad:
        what = (f"input {inp.dtype}, output {out.dtype}" if len(info.inputs) == len(info.outputs) == 1
                else f"tensor {bad[0].name} is {bad[0].dtype}")
        raise InputError(
            f"{tflite_path}: {what}; the emulator run needs {'/'.join(IO_IN)} inputs and {'/'.join(IO_OUT)} outputs",
            "build with --quant int8 (the default for tflm targets) or int16x8",
        )
    eval_path = (report.get("inputs") or {}).get("eval")
    labels, calls, ds = None, None, None
    task = (report.get("task") or {}).get("name") or "classification"
    tasks = [o.get("name") or "classification" for o in (report.get("task") or {}).get("outputs") or []] or [task]
    if eval_path:
        ds = take(load_data(eval_path, "eval", tasks if len(tasks) > 1 else task, [t.name for t in info.inputs],
                            [t.name for t in info.outputs]), n_inputs)
        if not ds.multi_io:  # data.check_against_input refuses sequences for several inputs or outputs
            calls = calls_per_sequence(ds.x.shape, inp.shape)  # [N, T, ...]: sequences of T calls
        source_dtype = inp.dtype if report.get("model_kind") == "tflite" else "float32"
        xs = tuple(to_input_domain(flatten_calls(x, calls), spec, data_is_quantized=bool(report.get("data_is_quantized")),
                                   source_dtype=source_dtype, path=eval_path).reshape(-1, *spec.shape[1:])
                   for x, spec in zip(ds.xs, info.inputs))
        labels, source = ds.ys, "eval"
    else:
        xs = tuple(generated_inputs(n_inputs, spec.nbytes, seed + k, spec.dtype).reshape(n_inputs, *spec.shape[1:])
                   for k, spec in enumerate(info.inputs))
        calls = n_inputs  # a model with state: the generated inputs are one sequence
        source = f"generated (seed {seed})"
    # every input of a sample back to back as bytes, in the model's order: what the firmware's edgekit_invoke takes
    x_q = np.concatenate([np.ascontiguousarray(x).reshape(len(x), -1).view(np.int8) for x in xs], axis=1)
    aot = build_dir / "aot"
    code = aot if (aot / "edgekit_model.h").is_file() else tflite
    raw, device = run_on_emulator(code, target, x_q, build_dir / "emulator", calls_per_sequence=calls)
    leg = run_legs({"int8": tflite}, {"int8": xs}, [Leg("tflm", "tflm", "int8", "int8", calls)])["tflm"]
    if not leg.ok:
        raise VerificationError(f"{tflite_path}: the reference {leg.failure()}")
    ours_all, ref_all, at = [], [], 0  # per output: the emulator's bytes seen as the output's dtype, and TFLM's
    for spec, r in zip(info.outputs, leg.outputs):
        ours_all.append(raw[:, at : at + spec.nbytes].copy().view(np.dtype(spec.dtype)))
        ref_all.append(np.ascontiguousarray(r).reshape(ours_all[-1].shape))
        at += spec.nbytes
    agree = byte_agreement(join_outputs(tuple(ours_all)), join_outputs(tuple(ref_all)))
    seq = calls if eval_path else None
    ours_all, ref_all = [last_calls(o, seq) for o in ours_all], [last_calls(r, seq) for r in ref_all]
    per_output = [None] * len(info.outputs)
    if ds is not None:
        from edgekit.verify.metrics import task_metrics as metrics_of
        from edgekit.verify.runtimes import dequantize

        x_real = (dequantize(xs[0], inp).reshape(ds.xs[0].shape) if report.get("data_is_quantized")
                  else ds.xs[0].astype(np.float32))
        per_output = [metrics_of(t, dequantize(o, spec).reshape(len(o), *spec.shape[1:]), x_real, y)
                      for t, o, spec, y in zip(tasks, ours_all, info.outputs, labels)]
    task_outputs = None
    if len(info.outputs) > 1:  # several outputs: each one's task metrics; no single accuracy
        task_outputs = [{"output": spec.name, "index": j, "task": t, "metrics": m}
                        for j, (spec, t, m) in enumerate(zip(info.outputs, tasks, per_output))]
    ours, ref, task_metrics = ours_all[0], ref_all[0], per_output[0]
    labels = labels[0] if labels is not None and len(info.outputs) == 1 else None
    top1 = task == "classification" and len(info.outputs) == 1  # top-1 of an autoencoder's or a regressor's outputs means nothing
    return EmulatorResult(
        machine=device.machine,
        runtime=device.runtime,
        outputs_bit_exact=agree.bit_exact,
        accuracy=_top1(ours, labels) if top1 else None if task_outputs else (task_metrics or {}).get("accuracy"),
        flash_bytes=device.flash_bytes,
        ram_bytes=device.ram_bytes,
        stack_bytes=device.stack_bytes,
        instructions_per_inference=device.instructions_per_inference,
        n_inputs=len(x_q),
        calls_per_sequence=calls,
        inputs=source,
        mismatched_inputs=agree.mismatched_inputs,
        tflm_accuracy=_top1(ref, labels) if top1 else None,
        device=device,
        code="aot/ (as shipped)" if code is aot else "generated from model.tflite (the build has no aot/)",
        shipped_hashes="checked" if shipped else "not recorded (build made before edgekit recorded them)",
        task=task,
        task_metrics=None if task_outputs else task_metrics,
        task_outputs=task_outputs,
    )


def _top1(outputs: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None or outputs.shape[1] < 2 or not np.issubdtype(np.asarray(labels).dtype, np.integer):
        return None
    return float((outputs.argmax(axis=1) == np.asarray(labels).reshape(-1)).mean())

