"""edgekit's ahead-of-time C runtime: parse a .tflite, plan memory, generate C, check it on the host.

- :func:`generate` writes plain C99 for a full-int8 or int16x8 model (``edgekit_model.h/.c`` and
  the runtime kernels it needs) and returns a :class:`CodegenResult` (arena, its
  lower bound, const bytes, the memory plan);
- :func:`host_check` compiles that C with the host gcc, runs N inputs and compares
  every output byte with the tflite-micro interpreter (:class:`HostCheckResult`);
  :func:`run_host` and :func:`compare_layers` are its building blocks.

Nothing here imports TensorFlow; the tflite-micro interpreter is imported only
when a comparison runs.
"""

from edgekit.aot.codegen import CodegenResult, generate
from edgekit.aot.hostcheck import HostCheckResult, compare_layers, generated_inputs, host_check, run_host

__all__ = [
    "CodegenResult", "HostCheckResult", "compare_layers", "generate", "generated_inputs", "host_check", "run_host",
]
