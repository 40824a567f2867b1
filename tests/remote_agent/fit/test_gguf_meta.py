"""The stdlib header reader agrees with ggml-org's `gguf` package and reads only the header."""

from __future__ import annotations

import gguf
import pytest

from remote_agent.fit.gguf_meta import GGUFFormatError, HeaderTruncated, parse_header, read_header


def test_header_matches_the_gguf_package(tiny_model_b):
    ours = read_header(tiny_model_b)
    theirs = gguf.GGUFReader(str(tiny_model_b))
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    assert ours.tensor_bytes == sum(int(t.n_bytes) for t in theirs.tensors)
    assert ours.arch_value("embedding_length") == theirs.fields["llama.embedding_length"].contents()
    assert len(ours.metadata["tokenizer.ggml.tokens"]) == len(theirs.fields["tokenizer.ggml.tokens"].contents())
    # the tensor data starts after the header: the reader stopped well before it
    assert ours.header_bytes < theirs.data_offset <= ours.header_bytes + 32


def test_a_short_prefix_says_how_much_more_it_needs(tiny_model):
    data = tiny_model.read_bytes()[:200_000]
    with pytest.raises(HeaderTruncated) as info:
        parse_header(data)
    assert info.value.need_at_least > len(data)


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"<html>not found</html>" * 10)
    with pytest.raises(GGUFFormatError, match="not a GGUF file"):
        read_header(bogus)


def test_a_file_cut_inside_its_header_is_refused(tmp_path, tiny_model):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model.read_bytes()[:300_000])
    with pytest.raises(GGUFFormatError, match="ends inside its GGUF header"):
        read_header(cut)
