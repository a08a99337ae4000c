"""The kernel-VM harness: boots Debian's 6.16 kernel with the real `ovpn`
module under QEMU and runs scenarios against it (see vm/README.md)."""
