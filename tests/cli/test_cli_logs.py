"""What a build prints, through a real process (issue 12, "Logs"): at INFO the stage lines,
counts and sizes and where the result is, no host command line; --log-level debug and
--log-file add the commands, their output and every step; a failure is printed once, with
its stage; --log-format json writes one object per event; --stage says where its result is.

Hermetic: ``build --stage packages`` against the signed test archive on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.cli.conftest import Hermetic, Run, environment


def test_default_level_prints_what_a_person_reads(hermetic: Hermetic, cli: Run) -> None:
    spec = hermetic.spec()
    done = cli("--config", hermetic.config, "build", "--stage", "packages", spec)
    err = done.stderr
    assert not [line for line in err.splitlines() if not line.startswith("INFO: ")], err
    assert "+ " not in err and "gpgv" not in err  # no host command line at INFO
    assert "validate: started (first run)" in err and "packages: done in " in err
    assert re.search(r"packages: resolved \d+ packages \([0-9.]+ \w?i?B\) from 3 "
                     r"repositories", err), err
    assert re.search(r"packages: downloaded \d+ packages", err), err
    assert "[web]" not in err  # one build: no name in front of its lines
    lock = hermetic.root / "work"
    out = done.stdout.splitlines()
    assert out[-1].startswith("stopped after packages: its result is ")
    result = Path(out[-1].rsplit(" ", 1)[1])
    assert result.is_file() and result.name == "lock.json" and result.is_relative_to(lock)
    assert not any(line.startswith("outputs:") for line in out)  # not built that far
    assert len(err.splitlines()) + len(out) <= 16, err + done.stdout
    assert "skipped" not in err  # the stages after --stage are in the table, not the log

    # the same again: each stage up to date, said once, and nothing about later stages
    again = cli("--config", hermetic.config, "build", "--stage", "packages", spec).stderr
    assert again.splitlines() == ["INFO: validate: skipped, up to date",
                                  "INFO: packages: skipped, up to date"], again


def test_debug_level_and_log_file_add_commands_and_steps(hermetic: Hermetic,
                                                         cli: Run) -> None:
    spec = hermetic.spec()
    log_file = hermetic.root / "logs" / "build.log"
    info = cli("--config", hermetic.config, "--log-file", log_file, "build", "--stage",
               "packages", spec).stderr
    text = log_file.read_text()
    lines = text.splitlines()
    # every line of the file has a timestamp, and it holds everything the console had
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} imagecomposer")
    assert all(stamp.match(line) for line in lines if not line.startswith("  ")), lines[:5]
    for line in info.splitlines():
        assert line.removeprefix("INFO: ") in text
    assert " DEBUG: + " in text and "gpgv" in text  # the host commands
    assert "repository bookworm: " in text and "lock " in text  # the steps
    assert len(lines) > 2 * len(info.splitlines())

    fresh = environment(hermetic.root)  # empty caches: the archive's signatures are checked
    fresh["IMAGECOMPOSER_CACHE_DIR"] = str(hermetic.root / "cache2")
    debug = cli("--config", hermetic.config, "--log-level", "debug", "build", "--no-cache",
                "--stage", "packages", spec, env=fresh).stderr
    assert "DEBUG: + " in debug and "gpgv" in debug, debug
    assert "DEBUG: repository bookworm-security: " in debug
    assert "packages: started (forced by --no-cache)" in debug  # one pair of parentheses


def test_a_failure_is_printed_once_with_its_stage(hermetic: Hermetic, cli: Run) -> None:
    spec = hermetic.spec(install=["ngnix"])
    done = cli("--config", hermetic.config, "build", spec, check=1)
    errors = [line for line in done.stderr.splitlines() if "ngnix" in line]
    assert len(errors) == 1, done.stderr
    assert re.match(r"ERROR: packages failed after [0-9.]+ s: Package not found: ngnix",
                    errors[0]), errors
    assert done.stdout == ""


def objects(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_log_format_is_one_object_per_event(hermetic: Hermetic, cli: Run) -> None:
    spec = hermetic.spec()
    done = cli("--config", hermetic.config, "--log-format", "json", "build", "--stage",
               "packages", spec)
    found = objects(done.stderr)  # every line is one JSON object
    for obj in found:
        assert list(obj)[:4] == ["event", "time", "build", "stage"], obj
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["time"])
    kinds = [o["event"] for o in found]
    assert kinds[:2] == ["stage_started", "stage_finished"] and kinds[-1] == "result"
    started = [(o["stage"], o["reason"]) for o in found if o["event"] == "stage_started"]
    assert started == [("validate", "first run"), ("packages", "first run")]
    assert {o["build"] for o in found if o["event"] != "log"} == {"web"}
    progress = [o for o in found if o["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"]
    assert set(progress[-1]) == {"event", "time", "build", "stage", "what", "done", "total",
                                 "unit"}
    resolved = next(o for o in found if o["event"] == "resolved")
    assert resolved["stage"] == "packages" and resolved["packages"] > 0
    result = found[-1]
    assert result["ok"] is True and result["exit_code"] == 0 and result["error"] == ""
    assert result["output"].endswith("/packages/lock.json")
    assert not [o for o in found if o["event"] == "log"]  # the text lines are not repeated
    assert done.stdout.splitlines()[-1].startswith("stopped after packages:")

    failed = cli("--config", hermetic.config, "--log-format", "json", "build",
                 hermetic.spec("bad", install=["ngnix"]), check=1)
    found = objects(failed.stderr)
    stage_failed = next(o for o in found if o["event"] == "stage_failed")
    assert stage_failed["stage"] == "packages" and "ngnix" in stage_failed["error"]
    result = next(o for o in found if o["event"] == "result")
    assert (result["ok"], result["exit_code"], result["stage"]) == (False, 1, "packages")
    assert result["error"].startswith("packages failed after ")


def test_stage_validate_says_it_writes_nothing(cli: Run, tmp_path: Path) -> None:
    spec = Path(__file__).parents[2] / "examples" / "debian-12-minimal.yml"
    out = tmp_path / "out"
    done = cli("build", "--stage", "validate", "-o", out, spec)
    assert done.stdout.splitlines()[-1] == ("stopped after validate: it writes nothing "
                                            "(the spec is valid)")
    assert "outputs:" not in done.stdout and not out.exists()
