"""Model variants LiteRT is known to mishandle, found before any runtime sees the model.

Each entry was measured, not guessed (ai-edge-litert 2.3.0 on x86_64; the
cases are replayed in ``tests/conformance/test_keyword_scrambled_8bit.py``):

- **SVDF with an int8 state tensor** (TFLM's ``keyword_scrambled_8bit.tflite``).
  LiteRT's full-integer SVDF (``tensorflow/lite/kernels/svdf.cc``, Eval's int8
  case) hands the time weights and the state to ``EvalIntegerSVDF`` as int16
  whatever their type, and its Prepare checks neither type. On a copy of that
  model cut after its first SVDF (64 filters x 8 memory cells: a 512 B int8
  state) one invoke changed 64 B past the end of the state buffer, at the
  offsets of an int16 state's new column (none on the int16-state
  ``keyword_scrambled.tflite`` cut the same way). On the whole model the
  interpreter's invokes return, and the corrupted heap aborts the process
  later: "double free or corruption" (reference kernels) or SIGSEGV (default
  kernels) when the interpreter is freed, or at a later allocation. TFLM's
  SVDF has int8 and int16 state paths (the int8 one with the state's zero
  point), and edgekit's C runtime follows it bit-exactly.

A microcontroller target ships TFLM, so the build's LiteRT legs are not run
on such a model and the report says why (:func:`litert_skip_reason`); a Linux
target ships LiteRT, so the model is refused (:func:`ensure_litert`, exit 4).
LiteRT crashing on any other model is still a verification failure (exit 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import UnsupportedOpError
from edgekit.tflite_model import ModelInfo, OperatorInfo
from edgekit.tflm_compat import where_layers

SVDF_INT8_STATE_REASON = ("LiteRT's integer SVDF kernel reads and writes the state (and reads the time weights) as int16 "
                          "whatever their type, so it writes past the end of an int8 state and corrupts the heap")


@dataclass(frozen=True)
class LiteRTHazard:
    """One op variant LiteRT mishandles: the op, the variant, the layers that have it and why."""

    op: str
    variant: str
    layers: tuple[OperatorInfo, ...]
    reason: str
    remedy: str

    def line(self) -> str:
        """``SVDF with an int8 state tensor (layer 'x' and 6 more): <reason>``."""
        return f"{self.op} {self.variant} ({where_layers(list(self.layers))}): {self.reason}"


def _svdf_int8_state(o: OperatorInfo) -> bool:
    # SVDF's non-constant inputs are its input and its variable state, in that order
    # (weights and bias are constants); any other layout is not the case measured
    return o.op == "SVDF" and o.input_dtypes == ("int8", "int8")


def litert_hazards(info: ModelInfo) -> list[LiteRTHazard]:
    """Every op variant of ``info`` that LiteRT is known to mishandle (empty for almost every model)."""
    svdf = tuple(o for o in info.operators if _svdf_int8_state(o))
    if not svdf:
        return []
    return [LiteRTHazard("SVDF", "with an int8 state tensor", svdf, SVDF_INT8_STATE_REASON,
                         "quantize the SVDF state to int16, as TensorFlow's converter does")]


def litert_skip_reason(info: ModelInfo, target_name: str) -> str | None:
    """For a microcontroller target: one line saying why LiteRT is not run on ``info``, or None when it can be."""
    hazards = litert_hazards(info)
    if not hazards:
        return None
    return (f"LiteRT not run: {'; '.join(h.line() for h in hazards)}; {target_name} runs TFLM, "
            "which verifies the model instead")


def ensure_litert(info: ModelInfo, target_name: str) -> None:
    """For a Linux target (LiteRT ships): raise UnsupportedOpError (exit 4) naming each op variant LiteRT mishandles."""
    hazards = litert_hazards(info)
    if hazards:
        raise UnsupportedOpError(f"{info.name}: LiteRT, the runtime of {target_name}, cannot run this model: "
                                 + "; ".join(h.line() for h in hazards),
                                 "deploy it to a TFLM target, or " + "; ".join(h.remedy for h in hazards))
