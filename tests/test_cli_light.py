"""``avlm --help``, ``avlm COMMAND --help`` (every command) and ``avlm train --list-recipes`` load neither torch nor
transformers, and ``avlm --help`` imports no command module: the CLI imports only the command it runs, and command
modules import the heavy code inside ``run``."""

from __future__ import annotations

import json
import subprocess
import sys

from avlm.cli import COMMANDS

HEAVY = ("torch", "transformers")

# Runs each command line in turn in one fresh interpreter; after each, records which heavy modules are loaded (the
# first command line that loads one is the culprit), its exit status and whether it printed a usage line.
PROBE = """
import contextlib, io, json, sys
from avlm.cli import main

report = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            status = main(argv)
        except SystemExit as stop:
            status = stop.code
    report.append({"argv": argv, "status": status, "printed": out.getvalue()[:200],
                   "heavy": sorted(name for name in {heavy} if name in sys.modules),
                   "commands": sorted(name for name in sys.modules if name.startswith("avlm.commands."))})
print(json.dumps(report))
""".replace("{heavy}", repr(HEAVY))


def _probe(command_lines: list[list[str]]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(command_lines)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_avlm_help_imports_no_command_module_and_no_torch():
    (top,) = _probe([["--help"]])
    assert top["status"] == 0 and top["printed"].startswith("usage: avlm")
    assert top["heavy"] == [] and top["commands"] == []


def test_every_command_help_and_list_recipes_stay_light():
    lines = [[name, "--help"] for name in COMMANDS] + [["train", "--list-recipes"]]
    report = _probe(lines)
    heavy = {" ".join(row["argv"]): row["heavy"] for row in report if row["heavy"]}
    assert heavy == {}, f"these command lines import {HEAVY} (the first one listed is the culprit): {heavy}"
    for row in report:
        assert row["status"] == 0, row
    for name, row in zip(COMMANDS, report, strict=False):
        assert row["printed"].startswith(f"usage: avlm {name}"), row
