"""Partition table limits (issue 18, item 10) and the relative destination advice (item 12).

Before: 130 partitions validated and built with rc 0, and the GPT silently held 128 entries
without the root partition; ``destination: ../etc/x`` was answered "like /../etc/x".
"""

from __future__ import annotations

from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import Problem
from imagecomposer.spec import Spec, check

HEAD = "image: {name: web, base: {os: debian, version: '12'}}\n"
ESP = "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"


def errors(text: str) -> list[Problem]:
    return list(check(Spec.from_text(HEAD + text, name="web.yml"), Config()).errors)


def partitions(count: int, table: str = "gpt", size: str = "16MiB") -> str:
    generic = "".join(f"    - {{name: p{i}, type: generic, size: {size}}}\n"
                      for i in range(count - 2))
    return (f"disk:\n  partition_table: {table}\n  partitions:\n{ESP}{generic}"
            "    - {name: root, type: root, size: 2GiB}\n")


def test_more_than_128_gpt_partitions_is_a_positioned_error() -> None:
    assert errors(partitions(128)) == []
    (problem,) = errors(partitions(130))
    assert problem.path == "disk.partitions[128]"
    assert (problem.file, problem.line) == ("web.yml", 5 + 128)  # the first that does not fit
    assert problem.message == "a gpt table holds at most 128 partitions, this disk has 130"


def test_mbr_holds_four_primary_partitions() -> None:
    text = ("customizations: {bootloader: grub}\n"
            + partitions(5, "mbr").replace(ESP, "    - {name: boot, type: generic, "
                                                "size: 512MiB}\n"))
    (problem,) = errors(text)
    assert problem.path == "disk.partitions"
    assert problem.message == "an mbr table holds at most 4 partitions; use gpt"


def test_mbr_addresses_two_tebibytes_also_when_the_size_is_auto() -> None:
    text = ("customizations: {bootloader: grub}\ndisk:\n  partition_table: mbr\n"
            "  partitions:\n    - {name: data, type: generic, size: 2TiB}\n"
            "    - {name: root, type: root, size: 4GiB}\n")
    (problem,) = errors(text)
    assert problem.path == "disk.partitions" and problem.line == 6
    assert problem.message == ("the partitions need 2101250MiB but an mbr partition table "
                               "addresses at most 2TiB; use gpt")


def destination_error(destination: str) -> str:
    (problem,) = errors("customizations:\n  files:\n"
                        f"    - {{content: x, destination: '{destination}'}}\n")
    assert problem.path == "customizations.files[0].destination"
    return problem.message


def test_a_relative_destination_gets_a_sane_suggestion_or_none() -> None:
    assert destination_error("etc/motd") == \
        "must be an absolute path inside the image, like /etc/motd"
    assert destination_error("./etc/motd") == \
        "must be an absolute path inside the image, like /etc/motd"
    for climbing in ("../etc/motd", "etc/../../motd", ".."):
        message = destination_error(climbing)
        assert message == "must be an absolute path inside the image" and ".." not in message
    assert destination_error("/etc/../motd") == "must not contain '..'"
