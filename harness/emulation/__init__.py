"""Emulated aarch64 boards: a real sshd whose python3 is aarch64 Python under qemu-user."""
