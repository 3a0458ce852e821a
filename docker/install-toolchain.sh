#!/bin/sh
# Install edgekit's microcontroller toolchain on Debian/Ubuntu: the Arm
# cross-compiler with newlib, QEMU for Cortex-M boards (system mode) and for
# Raspberry Pi binaries (user mode), and a host C compiler for QEMU's
# instruction-counting plugin; and PostgreSQL's server (the `edgekit search
# --storage postgresql://` test starts its own on localhost). The ONE install script: docker/Dockerfile and
# CI both run it. Idempotent: when every tool is already there it does nothing.
#
# --no-install-recommends matters: it keeps out documentation and the like.
# libstdc++-arm-none-eabi-newlib (1.57 GB installed, a 315 MB download; 14 s
# to install from a nearby Debian mirror) is listed on purpose: TFLM is C++,
# and the TFLM project edgekit emits links against it.
set -eu

PACKAGES="gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm qemu-user-static gcc g++ libc6-dev make cmake debian-archive-keyring postgresql"

have_all() {
    command -v arm-none-eabi-gcc >/dev/null 2>&1 &&
    command -v qemu-system-arm >/dev/null 2>&1 &&
    command -v qemu-aarch64-static >/dev/null 2>&1 &&
    command -v gcc >/dev/null 2>&1 &&
    command -v g++ >/dev/null 2>&1 &&
    command -v make >/dev/null 2>&1 &&
    command -v cmake >/dev/null 2>&1 &&
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] &&
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 &&
    [ -n "$(arm-none-eabi-gcc -print-file-name=libc_nano.a 2>/dev/null | grep /)" ] &&
    [ -n "$(arm-none-eabi-g++ -print-file-name=libstdc++_nano.a 2>/dev/null | grep /)" ]
}

if have_all; then
    echo "edgekit toolchain already installed: $(arm-none-eabi-gcc -dumpversion), $(qemu-system-arm --version | head -n 1)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $PACKAGES

if ! have_all; then
    echo "install-toolchain.sh: packages installed but a tool is still missing" >&2
    exit 1
fi
echo "edgekit toolchain installed: $(arm-none-eabi-gcc -dumpversion), $(qemu-system-arm --version | head -n 1)"
