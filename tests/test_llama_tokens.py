"""The offline tokenizer gives the hub's Meta-Llama-3.1-8B token ids."""

import subprocess
import sys

import llama_tokens


def test_known_ids_from_the_hub_tokenizer():
    tail = "... by the manufacturer from\n\nPrice is $765.00"
    assert llama_tokens.encode(tail)[-10:] == [279, 14290, 505, 271, 7117, 374, 400, 22240, 13,
                                               410]
    assert llama_tokens.encode("Price is $") == [7117, 374, 400]


def test_every_price_from_1_to_999_is_one_token():
    assert all(len(llama_tokens.encode(str(n))) == 1 for n in range(1, 1000))


def test_round_trip_and_batch():
    texts = ["Stainless steel kettle, 1.7 litres", "Ünïcödé — ok", ""]
    assert [llama_tokens.decode(llama_tokens.encode(t)) for t in texts] == texts
    assert llama_tokens.encode_batch(texts) == [llama_tokens.encode(t) for t in texts]
    assert llama_tokens.count("Price is $") == 3


def test_decode_as_hub_is_the_decode_of_transformers_4():
    # The course's decode: the hub tokenizer's bytes to text (a character cut in two becomes
    # U+FFFD), then transformers' clean-up, on by default in its Llama 3.1 config.
    import lora

    tok = lora.tokenizer()
    text = ("Fits the neck . It 's light , isn't it ? I 'm sure we 've got what you 're after ! "
            "a ' b ' ✅ Ünï 🎸 . end")
    ids = llama_tokens.encode(text)
    for k in range(1, len(ids) + 1):
        decoded = tok.decode(ids[:k], clean_up_tokenization_spaces=False)
        expected = tok.clean_up_tokenization(decoded)
        assert llama_tokens.decode_as_hub(ids[:k]) == expected
    assert llama_tokens.decode_as_hub(ids).startswith("Fits the neck. It's light, isn't it?")


def test_importing_the_modules_loads_nothing_heavy():
    code = ("import sys, settings, charts, files, pricer, items, chat, loaders, curation, "
            "testing, features, sentences, server, fine_tuning, jobs, llama_tokens; "
            "print(llama_tokens.encoding.cache_info().currsize, [m for m in ('torch', "
            "'datasets', 'transformers', 'sklearn', 'openai', 'anthropic', 'frontier') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "[]"]
