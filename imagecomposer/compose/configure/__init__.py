"""The configuration stage: each module applies one part of ``spec.customizations`` to a tree.

Every function takes the image tree (a host directory) and touches nothing outside it: every
file is read and written through :class:`imagecomposer.foundation.rootfs.Root`, which resolves paths
inside the tree (openat2 ``RESOLVE_IN_ROOT``) and never follows a symlink at a written name,
so no symlink in the image can make a write land on the host. Functions that need the image's
own tools (``locale-gen``, user scripts) run them through
:func:`imagecomposer.foundation.sandbox.run_in_chroot`; account and service changes use the host's
``useradd --root`` / ``systemctl --root``, which read and write only the tree's files.
"""
