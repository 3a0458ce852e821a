"""Cross-compile edgekit's generated C for a microcontroller target and run it under QEMU.

- :mod:`edgekit.toolchain.linker`: the linker script, from the target's budget;
- :mod:`edgekit.toolchain.cross`: compile + link with ``arm-none-eabi-gcc``;
- :mod:`edgekit.toolchain.qemu`: run the firmware on ``qemu-system-arm`` with semihosting;
- :mod:`edgekit.toolchain.mcu_verify`: run a model on the emulator and compare with TFLM.
"""
