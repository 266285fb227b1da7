"""The fast decoder gives the plain path's answers, switches adapters in place, streams text."""

import threading

import pytest
import torch

from ff_lib.inference.fastpath import FastDecoder, Sampling, TextStream, sample
from ff_lib.inference.tiny import TinyModelSpec, build_tiny_base

CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Arr matey, hoist the sails and find the treasure!",
    "The quick brown fox jumps over the lazy dog. éàü naïve café 東京",
] * 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_base(tmp_path_factory.mktemp("base"), CORPUS, TinyModelSpec(vocab_size=400))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    adapters = {}
    for i, name in enumerate(("pirate", "capitals")):
        model = AutoModelForCausalLM.from_pretrained(folder)
        config = LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=[
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
        )
        peft_model = get_peft_model(model, config)
        torch.manual_seed(100 + i)
        for layer_name, param in peft_model.named_parameters():
            if "lora_B" in layer_name:
                torch.nn.init.normal_(param, std=0.5)  # nonzero B: the adapter changes answers
        path = tmp_path_factory.mktemp(name)
        peft_model.save_pretrained(path)
        adapters[name] = path
    return folder, tokenizer, adapters


def peft_model_with(folder, adapters):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(folder)
    names = list(adapters)
    model = PeftModel.from_pretrained(base, adapters[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(adapters[name], adapter_name=name)
    model.eval()
    return model


def plain_greedy(model, ids, n, penalty=1.0):
    dev = model.get_input_embeddings().weight.device
    out = model.generate(
        input_ids=torch.tensor([ids], device=dev),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=dev),
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        repetition_penalty=penalty,
        pad_token_id=0,
    )
    return out[0, len(ids) :].tolist()


def prompt_ids(tokenizer, text="What is the capital of France?"):
    messages = [{"role": "user", "content": text}]
    enc = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(enc["input_ids"])


@pytest.mark.parametrize("penalty", [1.0, 1.2])
def test_greedy_matches_plain_generate_for_each_adapter_and_the_base(tiny, penalty):
    folder, tokenizer, adapters = tiny
    model = peft_model_with(folder, adapters)
    ids = prompt_ids(tokenizer)
    n = 24
    expected = {}
    for name in adapters:
        model.set_adapter(name)
        expected[name] = plain_greedy(model, ids, n, penalty)
    with model.disable_adapter():
        expected[None] = plain_greedy(model, ids, n, penalty)
    assert expected["pirate"] != expected[None], "the adapter must change the answer"

    decoder = FastDecoder(model, max_len=128)
    greedy = Sampling(temperature=0.0, repetition_penalty=penalty)
    for adapter in ("pirate", None, "capitals", "pirate"):
        decoder.activate(adapter)
        got = list(decoder.generate(ids, greedy, n))
        assert got == expected[adapter], adapter
    assert decoder.stats.new_tokens == n


def test_merge_keeps_weight_storage_and_base_weights(tiny):
    folder, _, adapters = tiny
    model = peft_model_with(folder, adapters)
    decoder = FastDecoder(model, max_len=64)
    weight = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    before, address = weight.detach().clone(), weight.data_ptr()
    decoder.activate("pirate")
    assert not torch.equal(weight, before)
    decoder.activate("capitals")
    decoder.activate(None)
    assert weight.data_ptr() == address
    torch.testing.assert_close(weight, before, atol=1e-5, rtol=0)


def test_stops_at_eos_and_on_request(tiny):
    folder, tokenizer, adapters = tiny
    model = peft_model_with(folder, adapters)
    decoder = FastDecoder(model, max_len=128)
    ids = prompt_ids(tokenizer)
    tokens = list(decoder.generate(ids, Sampling(), 20))
    cut = list(decoder.generate(ids, Sampling(), 20, eos_token_ids=(tokens[5],)))
    assert cut == tokens[: tokens.index(tokens[5])]
    stop = threading.Event()
    stream = decoder.generate(ids, Sampling(), 20, stop=stop)
    first = next(stream)
    stop.set()
    assert [first, *stream] == tokens[:1]


def test_too_long_prompt_is_refused(tiny):
    from ff_lib.errors import GenerationError

    folder, _, adapters = tiny
    decoder = FastDecoder(peft_model_with(folder, adapters), max_len=32)
    with pytest.raises(GenerationError, match="context"):
        list(decoder.generate(list(range(30)), Sampling(), 8))


def test_seeded_sampling_repeats_and_respects_top_k():
    logits = torch.randn(1, 50)
    s = Sampling(temperature=0.9, top_k=3, top_p=0.95, seed=3)
    top3 = set(torch.topk(logits, 3).indices[0].tolist())
    draws = [int(sample(logits, s, torch.Generator().manual_seed(7 + i))[0]) for i in range(40)]
    assert set(draws) <= top3
    again = [int(sample(logits, s, torch.Generator().manual_seed(7 + i))[0]) for i in range(40)]
    assert draws == again


def test_text_stream_pieces_join_to_the_decoded_text(tiny):
    _, tokenizer, _ = tiny
    text = "The quick brown fox: éàü naïve café 東京!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer)
    pieces = [stream.push(i) for i in ids]
    pieces.append(stream.flush())
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)
    assert all("\ufffd" not in p for p in pieces)
    assert sum(1 for p in pieces if p) > 5  # incremental, not one lump at the end


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_replay_matches_plain_generate(tiny):
    folder, tokenizer, adapters = tiny
    model = peft_model_with(folder, adapters).to("cuda")
    ids = prompt_ids(tokenizer)
    expected = {}
    for name in adapters:
        model.set_adapter(name)
        expected[name] = plain_greedy(model, ids, 24, 1.2)
    with model.disable_adapter():
        expected[None] = plain_greedy(model, ids, 24, 1.2)
    decoder = FastDecoder(model, max_len=128)
    assert decoder.use_graph
    greedy = Sampling(repetition_penalty=1.2)
    for adapter in ("pirate", None, "capitals", "pirate"):
        decoder.activate(adapter)
        assert list(decoder.generate(ids, greedy, 24)) == expected[adapter], adapter
    assert len(decoder._graphs) == 1  # switching merged adapters never recaptures


def test_background_warm_up_waits_for_the_hosts_lock(tiny):
    folder, _, adapters = tiny
    decoder = FastDecoder(peft_model_with(folder, adapters), max_len=64)
    assert decoder.ready_for("pirate")  # no graphs on the CPU: nothing to warm
    lock = threading.Lock()
    with lock:  # a reply on the plain path holds the model
        assert decoder.warm_up_in_background(lock, "pirate")
        assert not decoder.wait_warm(0.3)
        assert decoder.adapter is None
    assert decoder.wait_warm(60)
    assert decoder.warm_up_error is None
    assert decoder.adapter == "pirate"


def test_engine_replies_through_the_fast_path_match_the_plain_path(tiny):
    from ff_lib.inference import GenerationSettings, ModelHost

    folder, _, adapters = tiny
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    greedy = GenerationSettings(temperature=0.0, max_new_tokens=16, repetition_penalty=1.2)
    plain, fast = ModelHost(), ModelHost()
    fast.decoder = lambda model: FastDecoder(model, max_len=256)
    for adapter in (adapters["pirate"], None, adapters["capitals"], adapters["pirate"]):
        expected = plain.generate(str(folder), messages, greedy, adapter)
        got = fast.generate(str(folder), messages, greedy, adapter)
        if got.decoder != "fast":  # CUDA: plain path while the graph is captured in background
            assert fast._loaded.fast.wait_warm(120)
            got = fast.generate(str(folder), messages, greedy, adapter)
        assert expected.decoder == "generate"
        assert got.decoder == "fast"
        assert got.text == expected.text, adapter
