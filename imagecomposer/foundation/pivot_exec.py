"""The last step of the sandbox (see :mod:`imagecomposer.foundation.sandbox`): name the host
``localhost``, pivot_root into the prepared image tree, detach the host's root, drop
capabilities, exec the command.

Run by the sandbox's setup script as ``python -I -S -B pivot_exec.py ROOT CAPS [K=V ...] --
ARGV...`` inside the new namespaces, after every mount is in place. It is a separate program
and not a shell line because nothing after ``pivot_root`` may come from the image: a host tool
exec'd there (``umount``, ``setpriv``) would load the image's dynamic loader and libraries
while still holding every capability, so a tree prepared by an earlier script could run its
own code with them. This process is already loaded: it imports all it needs first, clears
``sys.path`` (an import after the pivot would read the image's files), and from the pivot on
makes only system calls until ``execve``.

Standard library only: it must not import imagecomposer (the package may not be importable
with ``-I -S``). :mod:`imagecomposer.foundation.sandbox` imports the tables below.
"""

from __future__ import annotations

import ctypes
import os
import sys

# Linux capability numbers (linux/capability.h). Anything above cap_last_cap is unknown to
# the kernel; anything the kernel knows and that is not kept is dropped, new ones included.
CAPABILITIES: dict[str, int] = {
    "chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4,
    "kill": 5, "setgid": 6, "setuid": 7, "setpcap": 8, "linux_immutable": 9,
    "net_bind_service": 10, "net_broadcast": 11, "net_admin": 12, "net_raw": 13,
    "ipc_lock": 14, "ipc_owner": 15, "sys_module": 16, "sys_rawio": 17, "sys_chroot": 18,
    "sys_ptrace": 19, "sys_pacct": 20, "sys_admin": 21, "sys_boot": 22, "sys_nice": 23,
    "sys_resource": 24, "sys_time": 25, "sys_tty_config": 26, "mknod": 27, "lease": 28,
    "audit_write": 29, "audit_control": 30, "setfcap": 31, "mac_override": 32,
    "mac_admin": 33, "syslog": 34, "wake_alarm": 35, "block_suspend": 36, "audit_read": 37,
    "perfmon": 38, "bpf": 39, "checkpoint_restore": 40,
}
# pivot_root has no libc wrapper: its system call number by machine.
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203,
              "s390x": 217, "i686": 217, "i386": 217, "armv7l": 218}

HOSTNAME = "localhost"  # the UTS name in the sandbox: never the host's, the same everywhere
DOMAINNAME = "(none)"
MNT_DETACH = 2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_VERSION_3 = 0x20080522
EXIT_SETUP = 125  # the sandbox could not be set up (not the command's own status)
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def mask(names: list[str]) -> int:
    """The capability bit mask of ``names`` (ValueError for an unknown name)."""
    value = 0
    for name in names:
        if name not in CAPABILITIES:
            raise ValueError(f"unknown capability {name!r}")
        value |= 1 << CAPABILITIES[name]
    return value


def parse(args: list[str]) -> tuple[str, int, dict[str, str], list[str]]:
    """(root, kept capability mask, environment, argv) from ``ROOT CAPS K=V... -- ARGV...``."""
    if len(args) < 4 or "--" not in args[2:]:
        raise ValueError("usage: pivot_exec.py ROOT CAP,CAP... [K=V ...] -- ARGV...")
    split = args.index("--", 2)
    env: dict[str, str] = {}
    for item in args[2:split]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"not an environment assignment: {item!r}")
        env[key] = value
    argv = args[split + 1:]
    if not argv:
        raise ValueError("no command after --")
    return args[0], mask([n for n in args[1].split(",") if n]), env, argv


def _fail(message: str, code: int = EXIT_SETUP) -> None:
    os.write(2, f"imagecomposer sandbox: {message}\n".encode("utf-8", "replace"))
    os._exit(code)


def _exec(argv: list[str], env: dict[str, str]) -> None:
    """execve ``argv`` looking it up on the environment's PATH (os.execvpe would import)."""
    name = argv[0]
    candidates = [name] if "/" in name else [
        (d or ".") + "/" + name for d in env.get("PATH", "/usr/bin:/bin").split(":")]
    error: OSError | None = None
    for path in candidates:
        try:
            os.execve(path, argv, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            error = error or exc
        except OSError as exc:  # found but not executable: remember, keep looking
            if error is None or isinstance(error, FileNotFoundError | NotADirectoryError):
                error = exc
    code = EXIT_NOT_FOUND if isinstance(error, FileNotFoundError | NotADirectoryError) \
        else EXIT_NOT_EXECUTABLE
    _fail(f"{name}: {error.strerror if error else 'not found'}", code)


def main(args: list[str]) -> None:
    try:
        root, keep, env, argv = parse(args)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.argtypes = [ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                               ctypes.c_ulong]
        libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        number = PIVOT_ROOT[os.uname().machine]
        fd = os.open("/proc/sys/kernel/cap_last_cap", os.O_RDONLY)  # pathlib: slower start
        last_cap = int(os.read(fd, 16))
        os.close(fd)
    except (ValueError, KeyError, OSError) as exc:
        _fail(f"cannot start: {exc}")
        return
    sys.path[:] = []  # from here on an import fails instead of reading the image
    sys.meta_path[:] = [m for m in sys.meta_path if getattr(m, "__name__", "") in (
        "BuiltinImporter", "FrozenImporter")]

    def check(result: int, what: str) -> None:
        if result != 0:
            errno = ctypes.get_errno()
            _fail(f"{what}: {os.strerror(errno)}")

    try:
        # The UTS namespace is the sandbox's own: a system call, not /proc/sys/kernel/hostname,
        # which root of a user namespace may not write.
        for call, name, what in ((libc.sethostname, HOSTNAME, "host name"),
                                 (libc.setdomainname, DOMAINNAME, "domain name")):
            check(call(name.encode(), len(name)), f"set the {what}")
        os.chdir(root)
        # new_root and put_old the same: the old root is stacked on the new one and the
        # detach below takes it away, leaving no host path in this mount namespace.
        check(libc.syscall(number, b".", b"."), "pivot_root")
        check(libc.umount2(b".", MNT_DETACH), "detach the host's root")
        os.chdir("/")
        for cap in range(last_cap + 1):
            if not keep >> cap & 1:
                check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
        check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
              "clear ambient capabilities")
        header = CapHeader(CAP_VERSION_3, 0)
        data = (CapData * 2)(CapData(keep & 0xFFFFFFFF, keep & 0xFFFFFFFF, 0),
                             CapData(keep >> 32, keep >> 32, 0))
        check(libc.capset(ctypes.byref(header), data), "capset")
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _exec(argv, env)
    except BaseException as exc:  # report without importing anything
        _fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
