"""The SQLite catalogue under concurrent writers in separate processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from domainrag.storage.catalog import Catalog

N = 40
WRITER = """
import json, sys, time
from domainrag.errors import ConflictError
from domainrag.storage.catalog import Catalog

path, who, start, N = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
cat = Catalog(path)
time.sleep(max(0.0, start - time.time()))  # both writers begin together
won = []
for i in range(N):
    cat.put("job", f"{who}-{i}", {"i": i})
    try:
        cat.create("dataset", f"shared-{i}", {"by": who})
        won.append(i)
    except ConflictError:
        pass
    cat.update("model", "counter", **{who: i})
print(json.dumps(won))
"""


def test_two_processes_write_the_catalog_concurrently(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    Catalog(db).put("model", "counter", {})
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), who, str(start), str(N)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    won_a, won_b = (set(json.loads(out)) for out, _ in outs)

    cat = Catalog(db)
    assert len(cat.list("job")) == 2 * N  # no lost writes
    assert won_a.isdisjoint(won_b) and won_a | won_b == set(range(N))  # each name created exactly once
    for i in range(N):
        assert cat.require("dataset", f"shared-{i}")["by"] == ("a" if i in won_a else "b")
    counter = cat.require("model", "counter")
    assert (counter["a"], counter["b"]) == (N - 1, N - 1)  # read-modify-write merges did not clobber
