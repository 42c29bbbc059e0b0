"""Fine-tune a causal LM with LoRA or QLoRA to finish "Price is $" (the course's week 7):
Llama 3.1 8B on a GPU as the course did, or any open model of `open_models` on a CPU.

The base model reads an item's test prompt and learns, through small low-rank adapters on its
attention projections, to write the price. Only the completion ("765.00") is in the loss; the
prompt is context. On a CUDA GPU with bitsandbytes the base is held in
4-bit nf4 (QLoRA), so the 8B model trains on one 16 GB card.

>>> llama = LlamaPricer(load_base()).fit(train)  # meta-llama/Llama-3.1-8B, on a GPU
...                                                                              # doctest: +SKIP
>>> Tester.test(llama, test)                                                     # doctest: +SKIP
>>> llama.save("data/pricer-adapter")            # the adapters only             # doctest: +SKIP

Without a GPU the same path trains a real pretrained model, SmolLM2 135M:

>>> model, tok = open_models.load("smollm2-135m")                               # doctest: +SKIP
>>> smol = LlamaPricer(model, tok, name="SmolLM2 LoRA").fit(train)              # doctest: +SKIP

`Hyperparameters(full=True)` trains every weight instead of adapters, which a model this
small allows. The unit tests also use `tiny_llama()`: two layers, the real Llama 3 vocabulary,
random weights.

The prediction is the course's improved decoding: of the next-token distribution after
"Price is $", take the `top_k` most likely tokens of the whole vocabulary, keep those that read
as prices (each of 1..999 is one Llama 3 token), and average their prices weighted by their
probabilities. `prices_first=True` takes the `top_k` likeliest price tokens instead, so that a
likely word among the top tokens does not crowd a price out. Tokenizers that write numbers
digit by digit (SmolLM2, Gemma) are read with `decoding.py` instead: greedy digits, or the
probability-weighted mean or median of the likeliest digit paths (`decoding=`).

The end-of-text token is not in the loss, as in the course: its SFTTrainer trained on the whole
prompt with DataCollatorForCompletionOnlyLM after "Price is $", added no end token to the text,
and padded with the end token, which that collator masks out of the labels wherever it
appears. Training the same three tokens keeps the loss comparable with the course's curves,
and only the first price token is ever read. TRL now appends the end token to every
completion, so the dataset is tokenized here (`encode`); `Hyperparameters(end_token=True)` puts it
back, for a model that should stop after the price when it generates.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, TrainerCallback
from trl import SFTConfig, SFTTrainer

import decoding
import hardware
import open_models
import settings
from files import owner
from items import Item, checked_prices
from pricer import Pricer

log = logging.getLogger("training")  # each step's loss; a local fine-tuning job's events
BASE_MODEL = "meta-llama/Llama-3.1-8B"
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
TOP_K = 3
BUDGET_WARMUP = 10  # steps of warmup when training to a time budget
# The learning rate's schedules over a time budget, by the share of it spent.
DECAYS = {"constant": lambda spent: 1.0, "linear": lambda spent: 1.0 - spent,
          "cosine": lambda spent: 0.5 * (1.0 + math.cos(math.pi * spent))}

# meta-llama/Llama-3.1-8B's config.json, as transformers reads it.
LLAMA_31_8B = dict(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
    rms_norm_eps=1e-5, bos_token_id=128000, eos_token_id=128001, tie_word_embeddings=False,
    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
)
# The same architecture and vocabulary, small enough to train on a CPU in seconds.
TINY = dict(LLAMA_31_8B, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)


@dataclass
class Hyperparameters:
    """The course's QLoRA hyperparameters."""

    r: int = 32
    alpha: int = 64
    dropout: float = 0.1
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    learning_rate: float = 1e-4
    scheduler: str = "cosine"
    warmup: float = 0.03         # share of the steps
    epochs: float = 1
    batch_size: int = 4
    max_length: int | None = None  # tokens per example; None: each whole (the course's 182
                                   # fits every curated prompt in Llama 3's tokens, not others')
    max_steps: int = -1          # > 0 stops early, e.g. for a quick run
    max_minutes: float | None = None  # stops after the step that passes this much training time
    seed: int = 42
    end_token: bool = False      # the course trained no end-of-text token after the price
    full: bool = False           # train every weight instead of LoRA adapters (small models)


@lru_cache(maxsize=1)
def tokenizer():
    """Llama 3's tokenizer as a transformers fast tokenizer, built offline from llama-models.

    It gives the hub tokenizer's ids: a <|begin_of_text|> first, then the BPE tokens.
    Padding uses the end token, on the right, as the course sets it.

    >>> tokenizer()("Price is $")["input_ids"]
    [128000, 7117, 374, 400]
    """
    import llama_models.llama3.tokenizer as llama3
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    special = llama3.Tokenizer.get_instance().special_tokens
    converter = TikTokenConverter(
        vocab_file=str(Path(llama3.__file__).with_name("tokenizer.model")),
        pattern=llama3.Tokenizer.pat_str,
        extra_special_tokens=sorted(special, key=special.get),
    )
    backend = converter.converted()
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                      special_tokens=[(BOS, special[BOS])]),
    ])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS)
    tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def example(item: Item) -> dict[str, str]:
    """An item as a prompt/completion pair: the loss covers only the completion.

    >>> example(Item.from_text("Kettle\\nBoils.", 24.99))["completion"]
    '25.00'
    """
    prompt = item.test_prompt()
    return {"prompt": prompt, "completion": item.prompt[len(prompt):]}


def dataset(items: Sequence[Item], hyperparameters: Hyperparameters | None = None, tok=None):
    """A `datasets.Dataset` of token ids and labels (`encode`), ready for SFTTrainer; `tok`
    is the model's tokenizer (default Llama 3's)."""
    from datasets import Dataset

    items = checked_prices(items, "LoRA training items")
    h = hyperparameters or Hyperparameters()
    tok = tok or tokenizer()
    return Dataset.from_list([encode(example(item), tok, h.max_length, h.end_token)
                              for item in items])


def encode(pair: dict[str, str], tok=None, max_length: int | None = None,
           end_token: bool = False) -> dict[str, list[int]]:
    """Token ids and labels for one pair (-100: not in the loss), the end-of-text token
    after the completion when `end_token`. An example longer than `max_length` is refused:
    cutting it would cut the price out of the loss.

    >>> pair = {"prompt": "Price is $", "completion": "765.00"}
    >>> encode(pair)["labels"]
    [-100, -100, -100, -100, 22240, 13, 410]
    """
    tok = tok or tokenizer()
    prompt = tok(pair["prompt"])["input_ids"]
    ids = tok(pair["prompt"] + pair["completion"] + (tok.eos_token if end_token else ""))[
        "input_ids"]
    if ids[:len(prompt)] != prompt:
        raise ValueError("the prompt's tokens change when the completion follows; end the "
                         "prompt on a token boundary")
    if max_length is not None and len(ids) > max_length:
        raise ValueError(f"an example of {len(ids)} tokens is over max_length={max_length}, "
                         "which would cut its price out of the loss: raise max_length, or set "
                         "it to None to keep every example whole")
    return {"input_ids": ids, "labels": [-100] * len(prompt) + ids[len(prompt):]}


def quantization_unavailable() -> str | None:
    """Why 4-bit loading can't run here, or None when it can."""
    from transformers.utils import is_bitsandbytes_available

    if not torch.cuda.is_available():
        return "4-bit quantization (QLoRA) needs a CUDA GPU, and none is visible"
    if not is_bitsandbytes_available():
        return "4-bit quantization (QLoRA) needs bitsandbytes: pip install bitsandbytes"
    return None


def quantization_config():
    """The course's QLoRA quantization: 4-bit nf4, double quantization, bf16 compute (float16
    on a GPU without bf16)."""
    reason = quantization_unavailable()
    if reason:
        raise RuntimeError(f"{reason}. Load the base unquantized with quantize=False instead.")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=hardware.precision("cuda"),
                              bnb_4bit_quant_type="nf4")


def load_base(path: str | Path = BASE_MODEL, quantize: bool | None = None):
    """The base model from the hub, a folder, or by its name in `open_models.REGISTRY`: 4-bit
    when `quantize` (None: when possible).

    Meta's Llama repositories are gated: accept the licence on the hub and log in first.
    """
    if str(path) in open_models.REGISTRY:
        path = open_models.checkpoint(str(path))
    if quantize is None:
        quantize = quantization_unavailable() is None
    cuda = torch.cuda.is_available()
    kwargs = {"dtype": hardware.precision("cuda") if cuda else torch.float32}  # CPU: autocast
    if quantize:
        kwargs["quantization_config"] = quantization_config()
    if cuda:
        kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.generation_config.pad_token_id = base_tokenizer(path).pad_token_id
    return model


def base_tokenizer(path: str | Path):
    """The tokenizer of the base model at `path`: Llama 3's, built offline, for Meta's Llama 3
    models and folders without tokenizer files; else the one saved beside the weights."""
    from transformers import AutoTokenizer

    if str(path).startswith("meta-llama/") or not (Path(path) / "tokenizer.json").exists():
        return tokenizer()
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.pad_token or tok.eos_token
    return tok


@contextmanager
def _quiet_renames() -> Iterator[None]:
    """No FutureWarning for the gradient-checkpointing names that TRL still uses and
    transformers 5 renamed: nothing a learner can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*gradient_checkpointing.* is deprecated",
                                FutureWarning)
        yield


def tiny_llama(seed: int = 42, **overrides) -> LlamaForCausalLM:
    """A two-layer Llama 3 with random weights: the real path, on a CPU, in seconds.

    >>> tiny_llama().config.vocab_size
    128256
    """
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**{**TINY, **overrides}))


def lora_config(hyperparameters: Hyperparameters | None = None) -> LoraConfig:
    """Adapters of rank r on the attention projections (q, k, v, o)."""
    h = hyperparameters or Hyperparameters()
    return LoraConfig(r=h.r, lora_alpha=h.alpha, lora_dropout=h.dropout, bias="none",
                      target_modules=list(h.targets), task_type="CAUSAL_LM")


def wandb_ready() -> bool:
    """True when a W&B key is set and the wandb package is installed."""
    return bool(settings.get("WANDB_API_KEY")) and importlib.util.find_spec("wandb") is not None


def sft_config(output_dir: str | Path, hyperparameters: Hyperparameters | None = None, **overrides):
    """TRL's SFTConfig with the course's hyperparameters, fitted to this machine.

    On a GPU: bf16 (float16 where it has none), the paged 32-bit AdamW of bitsandbytes and
    gradient checkpointing, as the course; on a CPU: torch's AdamW, no checkpointing (it saves
    memory a small model does not need by computing the forward pass twice: a third slower),
    the loss logged every 10 steps rather than 50, as steps are slow, and bf16 autocast over
    float32 weights where the CPU multiplies bf16 natively (`hardware.precision`: about twice
    float32's speed there), float32 elsewhere. Under a time budget alone (`max_minutes`, no
    `max_steps`) the learning rate warms up over `BUDGET_WARMUP` steps and then follows the
    schedule over the budget's time (`TimeBudget.schedule`): the number of steps is unknown,
    and a schedule over the whole epoch would still be near its start when the budget ends.
    W&B gets the run when `wandb_ready()`. `overrides` win.
    """
    from transformers.utils import is_bitsandbytes_available

    h = hyperparameters or Hyperparameters()
    cuda = torch.cuda.is_available()
    values = dict(
        output_dir=str(output_dir), num_train_epochs=h.epochs, max_steps=h.max_steps,
        per_device_train_batch_size=h.batch_size, gradient_accumulation_steps=1,
        learning_rate=h.learning_rate, lr_scheduler_type=h.scheduler, warmup_steps=h.warmup,
        weight_decay=0.001, max_grad_norm=0.3, max_length=h.max_length,
        completion_only_loss=True, train_sampling_strategy="group_by_length",
        optim="paged_adamw_32bit" if cuda and is_bitsandbytes_available() else "adamw_torch",
        bf16=hardware.precision() == torch.bfloat16, fp16=hardware.precision() == torch.float16,
        use_cpu=not cuda, gradient_checkpointing=cuda,
        logging_steps=50 if cuda else 10, save_steps=2000,
        save_total_limit=10,
        report_to="wandb" if wandb_ready() else "none", seed=h.seed,
    )
    if h.max_minutes is not None and h.max_steps <= 0:
        if h.scheduler not in DECAYS:
            raise ValueError(f"under a time budget the schedule is one of {', '.join(DECAYS)}, "
                             f"not {h.scheduler!r}")
        values.update(warmup_steps=BUDGET_WARMUP)
    with _quiet_renames():
        return SFTConfig(**{**values, **overrides})


def trainer(model, train: Sequence[Item], output_dir: str | Path,
            hyperparameters: Hyperparameters | None = None, tok=None, **overrides):
    """An SFTTrainer that adds LoRA adapters to `model` (or, `full`, trains all its weights)
    on `train`'s prices; `tok` is the model's tokenizer (default Llama 3's)."""
    h = hyperparameters or Hyperparameters()
    tok = tok or tokenizer()
    if not train:
        raise ValueError("no training items")
    with _quiet_renames():
        run = PriceTrainer(model=model, args=sft_config(output_dir, h, **overrides),
                           train_dataset=dataset(train, h, tok), processing_class=tok,
                           peft_config=None if h.full else lora_config(h))
    if h.max_minutes is not None:
        budget = TimeBudget(h.max_minutes)
        run.add_callback(budget)
        if h.max_steps <= 0:  # the schedule follows the budget's time
            run.budget = budget
    run.add_callback(LossLog())
    return run


class PriceTrainer(SFTTrainer):
    """SFTTrainer whose loss runs the output layer only over a batch's last positions, from
    just before its earliest label: the price's few tokens after a long prompt.

    TRL's own loss does that on a GPU with Triton only; elsewhere it scores every position
    against the whole vocabulary (49k words for SmolLM2), which took about half of each CPU
    step. The loss is the same, the mean negative log-likelihood of the label tokens, through
    the model's own head (so a model's logit scaling or soft-capping still applies); TRL's
    entropy and token-accuracy metrics are not logged.

    With a `budget` (a `TimeBudget`), the learning rate follows its schedule over the budget's
    time rather than over a number of steps.
    """

    budget: TimeBudget | None = None

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.budget is None:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            kind = getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type)
            self.lr_scheduler = self.budget.schedule(optimizer or self.optimizer, kind,
                                                     int(self.args.warmup_steps))
        return self.lr_scheduler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        first = max(1, int((labels != -100).int().argmax(dim=1).min()))  # earliest label
        keep = labels.shape[1] - first + 1  # logits from the position before it, to the end
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                        use_cache=False, logits_to_keep=keep)
        targets = labels[:, labels.shape[1] - keep + 1:]
        mask = targets != -100
        count = mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = torch.nn.functional.cross_entropy(
            outputs.logits[:, :-1][mask].float(), targets[mask], reduction="sum")
        loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
        return (loss, outputs) if return_outputs else loss


class LossLog(TrainerCallback):
    """Logs each reported training loss, and the run's mean at the end, to the "training"
    logger, with the step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss", (logs or {}).get("train_loss"))  # a step's, the run's
        if loss is not None:
            data = {"step": state.global_step, "total_steps": state.max_steps,
                    "train_loss": loss}
            log.info("Step %d/%d: training loss=%.4f", state.global_step, state.max_steps,
                     loss, extra={"data": data})


class TimeBudget(TrainerCallback):
    """Stops training after the step that passes `minutes` of training; `schedule` gives the
    learning rate that follows the budget's time (with `max_steps` or epochs, those set it,
    see `sft_config`)."""

    def __init__(self, minutes: float):
        self.seconds, self.start = minutes * 60, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.spent() >= 1:
            control.should_training_stop = True

    def spent(self) -> float:
        """The share of the budget spent so far (0 before training begins)."""
        return 0.0 if self.start is None else (time.monotonic() - self.start) / self.seconds

    def schedule(self, optimizer, kind: str, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
        """The learning rate: a linear warmup over `warmup` steps, then `DECAYS[kind]` of the
        share of the budget spent (cosine: from the full rate to zero when time runs out).

        >>> budget = TimeBudget(1)
        >>> weight = torch.nn.Parameter(torch.zeros(1))
        >>> rates = budget.schedule(torch.optim.SGD([weight], lr=1.0), "cosine", warmup=2)
        >>> rates.get_last_lr(), budget.spent()
        ([0.0], 0.0)
        """
        decay = DECAYS[kind]
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, step / max(1, warmup)) * decay(min(1.0,
                                                                                self.spent())))


def fine_tune(model, train: Sequence[Item], output_dir: str | Path,
              hyperparameters: Hyperparameters | None = None, tok=None, **overrides):
    """Train on `train` with `settings.llm_threads()` threads, save the adapters (or the whole
    model, `full`) and the tokenizer in `output_dir`, return the trainer.

    `trainer.model` is the fine-tuned model; `trainer.state.log_history` has the losses.
    """
    run = trainer(model, train, output_dir, hyperparameters, tok, **overrides)
    with _quiet_renames(), settings.torch_threads(settings.llm_threads()):
        run.train()
    # The trained model answers as its saved weights do once loaded again: in float32, not
    # under the bf16 autocast that training wrapped its forward pass in
    run.model = run.accelerator.unwrap_model(run.model, keep_fp32_wrapper=False)
    run.save_model(str(output_dir))
    return run


def load_adapter(base, path: str | Path) -> PeftModel:
    """The base model with the adapters saved in `path`, ready to predict."""
    if not (Path(path) / "adapter_config.json").exists():
        raise FileNotFoundError(f"{path} holds no LoRA adapter (no adapter_config.json)")
    with _quiet_renames():
        return PeftModel.from_pretrained(base, str(path)).eval()


def price_values(tok=None) -> torch.Tensor:
    """For every token id, the price it reads as (e.g. "765" -> 765.0), else 0: the course
    read a token with float() and kept it when positive; infinities ("inf") are left out.

    >>> values = price_values()
    >>> values[22240].item(), values[7117].item(), int((values > 0).sum() >= 999)
    (765.0, 0.0, 1)
    """
    tok = tok or tokenizer()
    texts = tok.batch_decode([[i] for i in range(len(tok))])
    values = torch.zeros(len(texts))
    for i, text in enumerate(texts):
        try:
            value = float(text)
        except ValueError:
            continue
        if 0 < value < math.inf:
            values[i] = value
    return values


def weighted_price(logits: torch.Tensor, values: torch.Tensor, top_k: int = TOP_K,
                   prices_first: bool = False) -> float:
    """The probability-weighted mean price of the `top_k` likeliest next tokens that are
    prices (NaN, no price, when none is: the course scored that as 0, as the Tester does);
    `prices_first` takes the `top_k` likeliest price tokens instead.

    >>> values = torch.tensor([0.0, 100.0, 200.0, 300.0])
    >>> logits = torch.tensor([9.0, 1.0, 1.0, -50.0])
    >>> [round(weighted_price(logits, values, top_k=k), 2) for k in (3, 1)]
    [150.0, nan]
    >>> weighted_price(logits, values, top_k=1, prices_first=True)
    100.0
    """
    logits = logits.float()
    values = torch.nn.functional.pad(values, (0, max(0, len(logits) - len(values))))[: len(logits)]
    if prices_first:
        logits = logits.masked_fill(values <= 0, float("-inf"))
        top_k = min(top_k, int((values > 0).sum()))
    top = torch.softmax(logits, dim=-1).topk(top_k)
    prices = values[top.indices]
    weights = top.values * (prices > 0)
    total = weights.sum()
    return float((weights * prices).sum() / total) if total > 0 else math.nan


def open_trainer(name: str | None = None, minutes: float | None = 5,
                 hyperparameters: Hyperparameters | None = None):
    """A local fine-tuning job's trainer: the course's LoRA on the open model `name` (default
    PRICER_OPEN_MODEL), freshly loaded for each job, within `minutes` of training.

    The job's examples are few, so an epoch is often shorter than the budget. The trainer's
    files go in a folder under data/open-jobs that is removed when the job ends, finished or
    not, or by the next server to start if this process was killed (the folder is named for
    it); the server keeps the tuned model's adapters in a folder of its own.
    """
    h = dataclasses.replace(hyperparameters or Hyperparameters(), max_minutes=minutes)

    def train(items: list[Item]) -> LlamaPricer:
        model, tok = open_models.load(name, progress=False)
        settings.jobs_dir().mkdir(parents=True, exist_ok=True)
        # named for this process: the next server removes it if this one is killed
        scratch = tempfile.TemporaryDirectory(dir=settings.jobs_dir(), prefix=f"{owner()}~")
        with scratch as output_dir:
            return LlamaPricer(model, tok, name=f"{name or settings.open_model()} LoRA",
                               hyperparameters=h, output_dir=output_dir).fit(items)

    return train


DECODINGS = ("one-token", "greedy", "mean", "median")
DIGIT_DECODING = "mean"  # the default where prices are written digit by digit


class LlamaPricer(Pricer):
    """A causal LM (base, fine-tuned or tiny) as a predictor: item -> price.

    It prices with whatever model it holds; `fit(train)` adds LoRA adapters and trains them
    (`fine_tune`; every weight with `Hyperparameters(full=True)`), `save` writes what it
    trained and the tokenizer, and `LlamaPricer.load(path, base)` reads them back.
    `decoding` reads the price: "one-token", the course's weighted rule, for tokenizers with
    a token per number up to 999 (Llama 3: the default there); "greedy", "mean" or "median"
    over digit paths (`decoding.py`, `beams` of them) for tokenizers that write digits one by
    one ("mean" is their default). `prices_first` changes the one-token rule (`weighted_price`).
    """

    needs_fit = False

    def __init__(self, model, tok=None, top_k: int = TOP_K, name: str = "Llama 3.1 QLoRA",
                 prices_first: bool = False, hyperparameters: Hyperparameters | None = None,
                 output_dir: str | Path | None = None, decoding: str | None = None,
                 beams: int = 8):
        self.model = model.eval()
        self.tokenizer = tok or tokenizer()
        self.values = price_values(self.tokenizer)
        one_token = int((self.values > 0).sum()) >= 999
        self.decoding = decoding or ("one-token" if one_token else DIGIT_DECODING)
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, not {decoding!r}")
        self.top_k, self.prices_first, self.name = top_k, prices_first, name
        self.hyperparameters, self.output_dir, self.beams = hyperparameters, output_dir, beams
        self.trained = isinstance(model, PeftModel)
        self.losses: list[tuple[int, float]] = []  # (step, training loss) as fit logged them

    def _fit(self, train: list[Item]) -> None:
        if self.trained:
            raise RuntimeError(f"{self.name} is already fine-tuned: fine-tune a new "
                               "LlamaPricer on the base model instead")
        output_dir = self.output_dir or settings.data_dir() / "llama-pricer"
        run = fine_tune(self.model, train, output_dir, self.hyperparameters, self.tokenizer)
        self.model, self.trained = run.model.eval(), True
        self.losses = [(log["step"], log["loss"]) for log in run.state.log_history
                       if "loss" in log]

    @torch.no_grad()
    def next_token_logits(self, prompt: str) -> torch.Tensor:
        """The model's logits for the token after `prompt`."""
        inputs = self.tokenizer(prompt, return_tensors="pt").to(self.model.device)
        return self.model(**inputs, logits_to_keep=1).logits[0, -1].cpu()

    def price(self, prompt: str) -> float:
        """The price the model writes after `prompt`, read by this pricer's decoding."""
        if self.decoding == "one-token":
            return weighted_price(self.next_token_logits(prompt), self.values, self.top_k,
                                  self.prices_first)
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"].to(self.model.device)
        if self.decoding == "greedy":
            return decoding.greedy_digits(self.model, ids, self.tokenizer)
        paths = decoding.digit_paths(self.model, ids, self.tokenizer, self.beams)
        return decoding.expected_price(paths, self.decoding)

    def _predict(self, items: list[Item]) -> np.ndarray:
        with settings.torch_threads(settings.llm_threads()):
            return np.array([self.price(item.test_prompt()) for item in items])

    def why_no_price(self, item: Item) -> str:
        if self.decoding == "one-token":
            return f"none of the {self.top_k} likeliest next tokens is a price"
        return "the model writes no digit after the prompt"

    def save(self, path: str | Path) -> Path:
        """Write what fine-tuning trained (the LoRA adapters, or the whole model when it
        trained every weight) and the tokenizer into the folder `path`."""
        if not self.trained:
            raise RuntimeError(f"{self.name} is not fine-tuned: nothing of its own to save")
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, base=None, **options) -> LlamaPricer:
        """A pricer saved in `path`: its adapters on `base` (by default the base model they
        were trained on), or its whole fine-tuned model; with the tokenizer saved beside."""
        adapters = Path(path) / "adapter_config.json"
        if adapters.exists():
            if base is None:
                base = load_base(json.loads(adapters.read_text())["base_model_name_or_path"])
            model = load_adapter(base, path)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        pricer = cls(model, base_tokenizer(path), **options)
        pricer.trained = True
        return pricer
