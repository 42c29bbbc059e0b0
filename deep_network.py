"""The 2025 edition's deep neural network: a hashed bag of words through residual blocks,
trained on the standardised log price.

>>> model = DeepNetworkPricer().fit(train)           # 10 layers of 256: minutes on a CPU
... # doctest: +SKIP
>>> model = DeepNetworkPricer(width=4096)            # the edition's 10 layers of 4,096
... # doctest: +SKIP

Each item's text (its summary, in the 2025 edition) becomes 5,000 hashed word columns, 1 where
a word occurs (stop words dropped), scaled to unit length: scikit-learn's HashingVectorizer,
as the edition uses it. A first layer (Linear, LayerNorm, ReLU, Dropout 0.2), `layers - 2`
residual blocks (Linear, LayerNorm, ReLU, Dropout, Linear, LayerNorm, plus the block's input,
ReLU) and a Linear to one number: the log price, standardised by the training mean and
standard deviation. It trains as the edition's does: L1 loss, AdamW (learning rate 1e-3,
weight decay 0.01), gradients clipped at 1, shuffled batches of 64, a cosine schedule over
10 epochs stepped once an epoch, 5 epochs.

The edition's 4,096 wide network has 290M parameters: about 1.7 GFLOP to train on one item,
some ten hours for its 800,000 items and 5 epochs on two CPU cores, minutes on a GPU. Here the
default is 256 wide (`width`; `layers` as the edition's 10): 2.3M parameters, which train on
the lite split in seconds and on 800,000 items in about half an hour on two cores
(docs/benchmarks.md). The first layer reads only the columns an item uses (an embedding bag:
the same sum as the dense Linear). Training runs in bf16 autocast where the CPU multiplies
bf16 natively (hardware.cpu().bf16), else in float32, on CUDA when there is a GPU; the
weights are kept as float32 arrays, and predicting needs numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

import hardware
import settings
from features import prices
from items import Item, texts
from pricer import SEED, Pricer

FEATURES = 5_000
EPS = 1e-5  # LayerNorm's


def vectorizer():
    """The edition's hashed binary bag of words (stateless: nothing to fit or save)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=FEATURES, stop_words="english", binary=True,
                             dtype=np.float32)


def network(width: int, layers: int, dropout: float):
    """The edition's network in torch, its first Linear an embedding bag of the columns used."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(),
                                       nn.Dropout(dropout), nn.Linear(width, width),
                                       nn.LayerNorm(width))

        def forward(self, x):
            return torch.relu(self.block(x) + x)

    class Network(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.EmbeddingBag(FEATURES, width, mode="sum")
            self.first_bias = nn.Parameter(torch.zeros(width))
            nn.init.uniform_(self.first.weight, -FEATURES ** -0.5, FEATURES ** -0.5)  # Linear's
            self.head = nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Dropout(dropout))
            self.blocks = nn.ModuleList(Block() for _ in range(layers - 2))
            self.out = nn.Linear(width, 1)

        def forward(self, columns, offsets, values):
            x = self.head(self.first(columns, offsets, per_sample_weights=values)
                          + self.first_bias)
            for block in self.blocks:
                x = block(x)
            return self.out(x).squeeze(1)

    return Network()


class DeepNetworkPricer(Pricer):
    """The edition's residual network over a hashed bag of words (see the module's notes)."""

    name = "Deep Neural Network"

    def __init__(self, width: int = 256, layers: int = 10, epochs: int = 5, batch: int = 64,
                 learning_rate: float = 1e-3, dropout: float = 0.2, seed: int = SEED,
                 bf16: bool | None = None):
        if layers < 2 or width < 1:
            raise ValueError("the network needs at least 2 layers (the first and the output) "
                             "and a width of at least 1")
        self.width, self.layers, self.epochs, self.batch = width, layers, epochs, batch
        self.learning_rate, self.dropout, self.seed = learning_rate, dropout, seed
        self.bf16 = bf16  # None: where the CPU multiplies bf16 natively, or on a GPU

    def _fit(self, train: list[Item]) -> None:
        import torch

        matrix = vectorizer().transform(texts(train)).tocsr()
        logs = np.log1p(prices(train))
        self.mean, self.scale = float(logs.mean()), float(logs.std(ddof=1) or 1.0)
        goal = torch.from_numpy(((logs - self.mean) / self.scale).astype(np.float32))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        bf16 = hardware.cpu().bf16 or device == "cuda" if self.bf16 is None else self.bf16
        self.precision = "bf16" if bf16 else "float32"
        with torch.random.fork_rng(), settings.torch_threads():
            torch.manual_seed(self.seed)
            model = network(self.width, self.layers, self.dropout).to(device)
            optimizer = torch.optim.AdamW(model.parameters(), lr=self.learning_rate,
                                          weight_decay=0.01, fused=True)  # one pass: 2x
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
            order = np.random.default_rng(self.seed)
            self.losses = []
            model.train()
            for _ in range(self.epochs):
                total = 0.0
                for rows in np.array_split(order.permutation(len(train)),
                                           max(1, -(-len(train) // self.batch))):
                    with torch.autocast(device, dtype=torch.bfloat16,
                                        enabled=self.precision == "bf16"):
                        guess = model(*bag(matrix[rows], device))
                        loss = torch.nn.functional.l1_loss(guess.float(),
                                                           goal[rows].to(device))
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
                    optimizer.step()
                    total += float(loss.detach()) * len(rows)
                self.losses.append(total / len(train))
                schedule.step()
            self.weights = {name: value.detach().float().cpu().numpy().copy()
                            for name, value in model.state_dict().items()}

    def predict_logs(self, items: Sequence[Item]) -> np.ndarray:
        """The network's log1p-price guesses, computed in float32 with numpy."""
        w = self.weights
        matrix = vectorizer().transform(texts(items)).tocsr()
        x = np.asarray(matrix @ w["first.weight"]) + w["first_bias"]
        x = np.maximum(layer_norm(x, w["head.0.weight"], w["head.0.bias"]), 0)
        for block in range(self.layers - 2):
            part = f"blocks.{block}.block."
            h = x @ w[part + "0.weight"].T + w[part + "0.bias"]
            h = np.maximum(layer_norm(h, w[part + "1.weight"], w[part + "1.bias"]), 0)
            h = h @ w[part + "4.weight"].T + w[part + "4.bias"]
            x = np.maximum(layer_norm(h, w[part + "5.weight"], w[part + "5.bias"]) + x, 0)
        out = (x @ w["out.weight"].T + w["out.bias"])[:, 0]
        return out.astype(np.float64) * self.scale + self.mean

    def _predict(self, items: list[Item]) -> np.ndarray:
        return np.expm1(self.predict_logs(items))

    def check_state(self) -> None:
        """Float32 weights whose shapes chain: 5,000 columns -> width -> ... -> 1."""
        super().check_state()
        if not self.fitted:
            return
        width, blocks = self.width, self.layers - 2
        shapes = {"first.weight": (FEATURES, width), "first_bias": (width,),
                  "head.0.weight": (width,), "head.0.bias": (width,),
                  "out.weight": (1, width), "out.bias": (1,)}
        for block in range(blocks):
            for n, shape in (("0", (width, width)), ("1", (width,)), ("4", (width, width)),
                             ("5", (width,))):
                shapes[f"blocks.{block}.block.{n}.weight"] = shape
                shapes[f"blocks.{block}.block.{n}.bias"] = shape[:1]
        got = {name: getattr(value, "shape", None) for name, value in self.weights.items()}
        if got != shapes or not all(getattr(v, "dtype", None) == np.float32
                                    for v in self.weights.values()):
            raise ValueError("a deep network's weights are not float32 arrays of its shape")


def bag(rows: sp.csr_matrix, device: str):
    """A batch of sparse rows as an embedding bag's columns, offsets and values."""
    import torch

    return (torch.from_numpy(rows.indices.astype(np.int64)).to(device),
            torch.from_numpy(rows.indptr[:-1].astype(np.int64)).to(device),
            torch.from_numpy(rows.data.astype(np.float32)).to(device))


def layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """torch's LayerNorm over the last axis, in numpy."""
    mean = x.mean(axis=1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=1, keepdims=True)
    return centred / np.sqrt(variance + EPS) * gain + bias
