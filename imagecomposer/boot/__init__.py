"""Boot tests: boot an image in QEMU (OVMF or SeaBIOS, KVM when it works, else TCG) and
check what is inside it offline (see docs/boot.md)."""

from imagecomposer.boot.accel import kvm_works
from imagecomposer.boot.qemu import BootResult, boot
from imagecomposer.boot.ssh import SshCommand, SshResult
from imagecomposer.compose.disk.inspect import file_info, list_dir, read_file

__all__ = ["BootResult", "SshCommand", "SshResult", "boot", "file_info", "kvm_works",
           "list_dir", "read_file"]
