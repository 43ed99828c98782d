"""The configuration stage: each module applies one part of ``spec.customizations`` to a tree.

Every function takes the image tree (a host directory) and touches nothing outside it. Paths
inside the tree are resolved with chroot semantics (:func:`paths.inside`), so an absolute
symlink in the image can never make a write land on the host. Functions that need the image's
own tools (``locale-gen``, user scripts) run them through
:func:`imagecomposer.compose.chroot.run_in_chroot`; account and service changes use the host's
``useradd --root`` / ``systemctl --root``, which read and write only the tree's files.
"""
