"""A directory tree treated as a filesystem root: nothing read or written through it escapes.

An image tree holds symlinks the build does not control (``/etc/systemd/system/sshd.service
-> /lib/systemd/system/ssh.service``, or whatever a package or a script planted). On the
host such an absolute link points at the host's own files, so a plain ``open(tree / path)``
can write onto the host. :class:`Root` resolves every image path the way the kernel would if
the process were chrooted into the tree, and acts only through directory file descriptors:

- Resolution is Linux ``openat2(2)`` with ``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS``: ``/``
  and ``..`` stop at the tree's root, absolute symlink targets start there, ``/proc`` magic
  links are refused. Where the kernel has no openat2 (``ENOSYS``: before 5.6, or a seccomp
  filter) an equivalent walk opens one component at a time with ``O_PATH | O_NOFOLLOW`` and
  resolves each symlink's text inside the tree itself (magic links are read as text, so they
  never leave the tree either).
- The *parent* of a path is resolved that way, then the final component is acted on with
  ``dir_fd=`` and never followed: a file write creates a temporary file in the resolved
  parent (``O_CREAT | O_EXCL | O_NOFOLLOW``) and renames it over the name, so a symlink
  there is *replaced*, never written through; ``chown`` is ``lchown``; ``chmod`` refuses a
  symlink; reads follow symlinks, inside the tree.
- :meth:`Root.copy_tree_in` walks the host source with ``O_NOFOLLOW`` too: a symlink in the
  source is copied as a symlink (the image's link, resolved in the image), never followed.

Every failure is an :class:`~imagecomposer.foundation.errors.ImagePathError` naming the image path.
:func:`allowed_source` is the rule for host files a spec copies in: they must lie, after
resolving symlinks, inside one of the allowed directories (the spec's directory).
"""

from imagecomposer.foundation.rootfs.fileops import TMP_PREFIX
from imagecomposer.foundation.rootfs.resolve import SYS_OPENAT2, ImagePath, open_in_root, openat2
from imagecomposer.foundation.rootfs.root import Root
from imagecomposer.foundation.rootfs.sources import allowed_source

__all__ = ["SYS_OPENAT2", "TMP_PREFIX", "ImagePath", "Root", "allowed_source", "open_in_root",
           "openat2"]
