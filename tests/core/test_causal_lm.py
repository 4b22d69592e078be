"""The causal-LM tower: offline builds from registered configs, prefixes of embeddings, padding-independent
positions, the KV cache, and its loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.towers import TINY_LLAMA, CausalLM, CausalLMConfig, register_hf_config, structure_only

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(CausalLMConfig(hf_model=TINY_LLAMA, config_overrides={"vocab_size": 50})).eval()


def test_tiny_llama_builds_offline_with_its_overrides(lm):
    assert type(lm.model).__name__ == "LlamaForCausalLM"
    assert lm.vocab_size == 50 and lm.model.get_input_embeddings().weight.shape == (50, 64)
    assert lm.model.lm_head.weight.shape == (50, 64)


def test_an_override_the_config_lacks_is_refused():
    with pytest.raises(ConfigError, match="no field 'vocab_sise'"):
        CausalLM(CausalLMConfig(config_overrides={"vocab_sise": 10}))


def test_an_unregistered_hub_model_offline_is_a_config_error():
    with pytest.raises(ConfigError, match="no-such/model"):
        CausalLM(CausalLMConfig(hf_model="no-such/model"))


def test_a_7b_llama_builds_on_meta_from_its_registered_config():
    fields = {
        "model_type": "llama",
        "vocab_size": 32016,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "tie_word_embeddings": False,
    }
    register_hf_config("test-causal-lm/llama-7b", fields)
    with structure_only(), torch.device("meta"):
        lm = CausalLM(CausalLMConfig(hf_model="test-causal-lm/llama-7b", pretrained=True))
    h, v, inter, layers = 4096, 32016, 11008, 32
    # embeddings + head, then per layer: q/k/v/o, gate/up/down, two RMSNorms; a final norm
    expected = 2 * v * h + layers * (4 * h * h + 3 * h * inter + 2 * h) + h
    assert sum(p.numel() for p in lm.parameters()) == expected
    assert all(p.is_meta for p in lm.parameters())


def test_the_loss_is_next_token_cross_entropy_on_the_labelled_tokens_only(lm):
    torch.manual_seed(1)
    ids = torch.randint(3, 50, (2, 6))
    prefix = torch.randn(2, 3, 64)
    labels = ids.clone()
    labels[:, :2] = -100  # a prompt: context only
    out = lm(ids, prefix_embeds=prefix, labels=labels)
    logits = out.logits[:, 3:]  # the token slots, after the prefix
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert out.logits.shape == (2, 9, 50)
    assert torch.allclose(out.loss, expected)


def test_no_target_at_all_is_a_data_error(lm):
    ids = torch.randint(3, 50, (1, 4))
    with pytest.raises(DataError, match="no token"):
        lm(ids, labels=torch.full_like(ids, -100))


def test_left_padding_changes_nothing_for_the_real_tokens(lm):
    torch.manual_seed(2)
    prefix = torch.randn(1, 2, 64)
    ids = torch.randint(3, 50, (1, 5))
    alone = lm(ids, prefix_embeds=prefix).logits
    padded_prefix = torch.cat([torch.randn(1, 3, 64), prefix], dim=1)  # 3 slots of junk, masked out
    mask = torch.tensor([[0, 0, 0, 1, 1]])
    padded = lm(ids, prefix_embeds=padded_prefix, prefix_mask=mask).logits
    assert torch.allclose(padded[:, 3:], alone, atol=1e-5)


def test_a_cached_step_gives_the_logits_of_a_full_recomputation(lm):
    torch.manual_seed(3)
    prefix = torch.randn(2, 4, 64)
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    ids = torch.randint(3, 50, (2, 3))
    full = lm(ids, prefix_embeds=prefix, prefix_mask=mask).logits[:, -1]
    first = lm(ids[:, :2], prefix_embeds=prefix, prefix_mask=mask, use_cache=True)
    past_mask = torch.cat([mask, torch.ones(2, 2, dtype=torch.long)], dim=1)
    step = lm(ids[:, 2:], cache=first.cache, cache_mask=past_mask, use_cache=True).logits[:, -1]
    assert torch.allclose(step, full, atol=1e-5)


def test_ids_outside_the_vocabulary_are_a_data_error(lm):
    with pytest.raises(DataError, match="outside the vocabulary"):
        lm(torch.tensor([[1, 50]]))
