"""The benchmark's guest-side boot profile (``benchmarks/boot_profile.py``): the unit it
adds to both images and the parser of what that unit printed on a real serial console."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import boot_profile
from imagecomposer.spec import Spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# the end of a real console (the peer image, TCG): the getty's prompt and kernel messages
# interleave with the unit's output; the kernel timestamps printed by dmesg come last
CONSOLE = """\
[   14.206370] Run /init as init process\r
[   23.458383] systemd[1]: systemd 252.39-1~deb12u2 running in system mode (+PAM)\r
\x1b[0;32m  OK  \x1b[0m] Started serial-getty@ttyS0.service\r
[   64.543890] sh[240]: BOOT-PROFILE-BEGIN

Debian GNU/Linux 12 vm ttyS0

vm login: [   64.746792] sh[335]: Startup finished in 21.844s (kernel) + 42.649s \
(userspace) = 1min 4.494s
[   64.755187] sh[335]: graphical.target reached after 41.484s in userspace.
[   66.689083] kvm: Nested Virtualization enabled
[   80.899090] sh[336]: The time when unit became active or started is printed after the \
"@" character.
[   80.911144] sh[336]: serial-getty@ttyS0.service @36.671s
[   80.911744] sh[336]: └─systemd-user-sessions.service @35.421s +786ms
[   80.930655] sh[336]:   └─basic.target @34.257s
[   80.950104] sh[336]:     └─-.slice @10.456s
[   86.410937] sh[338]: 21.446s dev-vda2.device
[   86.422960] sh[338]:  7.280s systemd-journald.service
[   86.423689] sh[338]:  1min 6.469s e2scrub_reap.service
[   86.426398] sh[338]:   687ms modprobe@loop.service
[   87.033294] sh[340]: [   14.206370] Run /init as init process
[   87.035745] sh[340]: [   23.458383] systemd[1]: systemd 252.39-1~deb12u2 running in system
[   87.040000] sh[240]: BOOT-PROFILE-END
"""


def test_console_is_split_into_phases() -> None:
    profile = boot_profile.parse(CONSOLE, login=78.7)
    assert profile.kernel == pytest.approx(14.206370)
    assert profile.initramfs == pytest.approx(23.458383 - 14.206370)
    # systemd started 21.844 s after the kernel; the getty 36.671 s after that
    assert profile.userspace == pytest.approx(21.844 + 36.671 - 23.458383)
    assert profile.firmware is None  # not timed: in the rest, with the prompt
    assert profile.rest == pytest.approx(78.7 - 21.844 - 36.671)
    assert profile.chain == ("serial-getty@ttyS0.service @36.671s",
                             "└─systemd-user-sessions.service @35.421s +786ms",
                             "  └─basic.target @34.257s", "    └─-.slice @10.456s")
    assert profile.blame == ("21.446s dev-vda2.device", "7.280s systemd-journald.service",
                             "1min 6.469s e2scrub_reap.service", "687ms modprobe@loop.service")
    assert profile.split == ("firmware and prompt 20.2 + kernel 14.2 + initramfs 9.3 + "
                             "userspace 35.1 s")
    timed = boot_profile.parse(CONSOLE, login=78.7, firmware=17.5)
    assert timed.rest == pytest.approx(78.7 - 17.5 - 21.844 - 36.671)
    assert timed.split == ("firmware 17.5 + kernel 14.2 + initramfs 9.3 + userspace 35.1 + "
                           "prompt 2.7 s")


def test_durations_and_a_console_without_profile() -> None:
    assert boot_profile.seconds("1min 7.293s") == pytest.approx(67.293)
    assert boot_profile.seconds("786ms") == pytest.approx(0.786)
    assert boot_profile.seconds("2min") == 120
    with pytest.raises(ValueError, match="not a systemd duration"):
        boot_profile.seconds("soon")
    with pytest.raises(ValueError, match="no boot profile"):
        boot_profile.parse("vm login: ", login=1.0)


def test_unit_goes_into_the_spec_copy_and_a_tree(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "spec", ignore=shutil.ignore_patterns("output"))
    spec_path = tmp_path / "spec/debian-12-minimal.yml"
    boot_profile.add_to_spec(spec_path)
    spec = Spec.load(spec_path)
    assert spec.customizations.services.enabled == ("systemd-networkd", boot_profile.NAME)
    unit = next(f for f in spec.customizations.files
                if f.destination == f"/etc/systemd/system/{boot_profile.NAME}")
    assert unit.source is not None and unit.source.read_text() == boot_profile.UNIT
    tree = tmp_path / "tree"
    (tree / "etc/systemd/system").mkdir(parents=True)
    boot_profile.add_to_tree(tree)
    boot_profile.add_to_tree(tree)  # twice: still one link
    link = tree / "etc/systemd/system/multi-user.target.wants" / boot_profile.NAME
    assert link.readlink() == Path(f"/etc/systemd/system/{boot_profile.NAME}")
    assert "systemctl is-system-running --wait" in boot_profile.UNIT
