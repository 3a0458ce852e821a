"""Raspberry Pi verification on emulated aarch64 (user-mode QEMU, no Docker, no binfmt).

- :mod:`edgekit.pi_emulator.root`: build and cache the aarch64 root (Debian's
  arm64 ``python3.11`` and the aarch64 wheels of each runtime leg);
- :mod:`edgekit.pi_emulator.run`: run a Python script (a build's ``run.py``)
  with that root under ``qemu-aarch64-static`` on a pinned CPU;
- :mod:`edgekit.pi_emulator.verify`: ``verify_pi_build``, what
  ``edgekit verify BUILD_DIR --emulator`` calls for a Pi build.
"""
