"""Disk side of the compose stage: plan a layout, build filesystems from directories and
assemble the raw disk, with no loop device and no mount (see docs/disk.md)."""

from imagecomposer.compose.disk.assembly import AssemblyResult, assemble, check_space
from imagecomposer.compose.disk.content import tree_size
from imagecomposer.compose.disk.plan import plan_layout
from imagecomposer.compose.disk.sizing import verity_size
from imagecomposer.compose.disk.verity import VerityInfo

__all__ = ["AssemblyResult", "VerityInfo", "assemble", "check_space", "plan_layout",
           "tree_size", "verity_size"]
