"""edgekit's ahead-of-time C runtime: parse a .tflite, plan memory, generate C, check it on the host.

- :func:`edgekit.aot.codegen.generate` writes the C code for a model;
- :func:`edgekit.aot.hostcheck.host_check` compiles it with the host gcc and compares with TFLM.
"""
