"""imagecomposer: compose customized, bootable, signed OS images from a YAML build spec."""

__version__ = "0.1.0"
