#!/usr/bin/env python3
"""docs/router.md's plugin reference lists every plugin type `tandem router --help-plugins`
prints, and nothing that tandem does not have."""
import os
import re
import subprocess

from harness import TANDEM, run

SRC = os.environ.get("TANDEM_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))


def test_every_plugin_type_is_in_the_reference():
    out = subprocess.run([TANDEM, "router", "--help-plugins"], capture_output=True,
                         timeout=20, check=True).stdout.decode()
    types = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert len(types) >= 50, types
    doc = open(os.path.join(SRC, "docs", "router.md")).read()
    ref = doc[doc.index("## Plugin reference"):]
    rows = set()
    for line in ref.splitlines():
        cells = line.split("|")
        if len(cells) > 3:
            rows.update(re.findall(r"`([a-z0-9-]+)`", cells[2]))
    missing = sorted(types - rows)
    assert not missing, "docs/router.md's plugin reference lacks: %s" % missing
    extra = sorted(rows - types)
    assert not extra, "docs/router.md's plugin reference lists unknown types: %s" % extra


if __name__ == "__main__":
    run([test_every_plugin_type_is_in_the_reference])
