"""Emulated aarch64 boards: a real sshd whose python3 is aarch64 Python under qemu-user; farms of them, and a
labgrid lab serving them as places. Below execution, whose board sessions start an emulated board when they
open. Imports core and config."""
