"""Encoder inputs: special ids in the last N positions for any text, left padding, positions."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tokenizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.core.backbone import prepare_tokenizer
from workbench.core.errors import WorkbenchError
from workbench.core.inputs import add_special_tokens, build_encoder_batch, check_texts

TOKENIZER = prepare_tokenizer(make_tokenizer())
STRINGS = ["<think_1>", "<think_2>", "<compress_1>", "<compress_2>", "<compress_3>"]
SPECIAL_IDS = add_special_tokens(TOKENIZER, STRINGS)
MAX_LENGTH = 24

texts = st.one_of(
    st.text(max_size=60),
    st.just(""),
    st.text(min_size=200, max_size=2000),
    st.lists(st.sampled_from([*STRINGS, "<|im_end|>", "<s>", " word", "ü"]), max_size=30).map("".join),
)


def assert_invariants(batch, special_ids, max_length, tokenizer, rows):
    n = len(special_ids)
    assert batch.input_ids.shape[1] <= max_length
    assert torch.equal(batch.input_ids[:, -n:], torch.tensor(special_ids).expand(len(rows), -1))
    # special ids appear nowhere else
    assert not torch.isin(batch.input_ids[:, :-n], torch.tensor(special_ids)).any()
    for i, text in enumerate(rows):
        mask = batch.attention_mask[i]
        real = int(mask.sum())
        # left padding: zeros first, then ones
        assert torch.equal(mask, torch.cat([torch.zeros(len(mask) - real), torch.ones(real)]).long())
        assert (batch.input_ids[i, : len(mask) - real] == tokenizer.pad_token_id).all()
        # positions count from the first real token
        assert batch.position_ids[i, -real:].tolist() == list(range(real))
        # the text part is the tokenizer's own output, truncated from the right
        own = tokenizer(text, split_special_tokens=True)["input_ids"][: max_length - n]
        assert batch.input_ids[i, len(mask) - real : len(mask) - n].tolist() == own


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(texts, min_size=1, max_size=5))
def test_special_ids_fill_the_last_positions(rows: list[str]) -> None:
    batch = build_encoder_batch(TOKENIZER, rows, SPECIAL_IDS, MAX_LENGTH)
    assert_invariants(batch, SPECIAL_IDS, MAX_LENGTH, TOKENIZER, rows)


def test_long_text_is_truncated_and_specials_kept() -> None:
    batch = build_encoder_batch(TOKENIZER, ["bread " * 500, "hi"], SPECIAL_IDS, MAX_LENGTH)
    assert batch.input_ids.shape == (2, MAX_LENGTH)
    assert batch.attention_mask[0].all()
    assert batch.input_ids[0, 0] == TOKENIZER.bos_token_id  # BOS kept: truncation cuts the end


def test_zero_thought_tokens() -> None:
    only_compress = SPECIAL_IDS[2:]
    batch = build_encoder_batch(TOKENIZER, ["a", "longer text here"], only_compress, MAX_LENGTH)
    assert_invariants(batch, only_compress, MAX_LENGTH, TOKENIZER, ["a", "longer text here"])


def test_left_padding_is_set() -> None:
    assert TOKENIZER.padding_side == "left"
    assert TOKENIZER.pad_token == TOKENIZER.eos_token  # this tokenizer had no pad token


@pytest.mark.parametrize("bad", [[""], ["ok", "   "], [], [3]])
def test_check_texts_refuses_empty_input(bad) -> None:
    with pytest.raises(WorkbenchError) as err:
        check_texts(bad)
    assert "\n" not in str(err.value) and "Fix:" in str(err.value)
