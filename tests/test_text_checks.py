"""The one rule for texts a model can take (`mlbench.serving.text_checks`), shared by the server and CLI."""

from __future__ import annotations

import json

from mlbench.serving.text_checks import check_texts, text_problem


def test_lone_surrogates_and_nul_are_named_other_text_passes():
    lone = json.loads('"bad \\ud800 text"')  # what a JSON client can send
    pair = json.loads('"ok \\ud83d\\ude00"')  # a proper surrogate pair decodes to one emoji
    texts = ["plain", lone, "a\x00b", pair, "", "caf\u00e9 \u6f22\u5b57", "\udc80"]
    found = check_texts(texts)
    assert [i for i, _ in found] == [1, 2, 6]
    assert "U+D800 at character 4" in found[0][1] and "UTF-8" in found[0][1]
    assert "NUL character at character 1" in found[1][1]
    assert "U+DC80 at character 0" in found[2][1]
    for i in (0, 3, 4, 5):  # what passes really encodes (so tf.constant takes it)
        assert text_problem(texts[i]) is None
        texts[i].encode("utf-8")
    assert check_texts([]) == []
