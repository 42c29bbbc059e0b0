"""Approximate nearest rows by cosine for a large base: an inverted file over a random
projection, re-ranked exactly.

>>> import scipy.sparse as sp
>>> base = sp.random(3_000, 500, 0.02, "csr", random_state=0)
>>> base = sp.csr_matrix(base / np.sqrt(base.multiply(base).sum(1)))
>>> sims, rows = Index(base, lists=30).search(base[:5], 3)
>>> rows[:, 0].tolist()                          # each row finds itself
[0, 1, 2, 3, 4]

Comparing every query with every base row costs their product: quadratic when the queries
are the training items themselves (out-of-fold features), hours at the course's 400,000. So
past `features.EXACT_BASE` rows, `features.nearest` comes here:
1. every row (unit TF-IDF, sparse) is projected to `DIMS` dense dimensions by a seeded sparse
   random sign matrix (cosines kept within about 1/sqrt(DIMS)); dense rows (sentence
   embeddings) are taken as they are;
2. the base is clustered by spherical k-means into about one list per `LIST_SIZE` rows;
3. each query is compared, in float32, with the rows of its `PROBES` nearest lists only, and
   keeps the `RERANK` most similar;
4. and its `RERANK` rows sharing the most weight in rare words (those in at most `RARE`
   base rows: short inverted lists), which finds the near-copies that the projection blurs;
5. those are re-ranked by their exact (float64) cosine, so the similarities returned are exact
   and only a missed neighbour is approximate.
The cost grows with the rows compared, PROBES x LIST_SIZE and at most RARE a rare word, a
query: linear in the queries, with a term in queries x lists (seconds at 800,000). On 2,000
real products against 12,398 the top neighbour was the exact one for 99.5% and 94% of the
10 nearest were; on the synthetic sample's, 99.2% and 95%. Seeded; the float32 comparisons
may choose another candidate at a near tie on another CPU, as float32 models do.
"""

from __future__ import annotations

import weakref

import numpy as np
import scipy.sparse as sp

DIMS = 256
LIST_SIZE = 1_000
PROBES = 8
RERANK = 32  # candidates from each of the two searches re-ranked exactly (at least 3k)
RARE = 200  # base rows a word may be in and still propose candidates
CHUNK = 20_000  # queries at a time
SEED = 42


def project(rows, width: int, seed: int = SEED) -> np.ndarray:
    """Unit float32 rows of DIMS columns: `rows` through a seeded sparse sign matrix (each
    input column to 4 output columns), a Johnson-Lindenstrauss projection in O(nonzeros)."""
    rng = np.random.default_rng(seed)
    spread = 4
    signs = rng.choice([-1.0, 1.0], width * spread) / np.sqrt(spread)
    matrix = sp.csr_matrix((signs, (np.repeat(np.arange(width), spread),
                                    rng.integers(0, DIMS, width * spread))),
                           shape=(width, DIMS))
    rows = sp.csr_matrix(rows)
    dense = np.vstack([(rows[s:s + CHUNK] @ matrix).toarray().astype(np.float32)
                       for s in range(0, rows.shape[0], CHUNK)])
    return dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)


def clusters(points: np.ndarray, lists: int, seed: int = SEED, rounds: int = 10) -> np.ndarray:
    """Unit centroids of spherical k-means on a seeded sample of `points` (64 a list)."""
    rng = np.random.default_rng(seed)
    sample = points[np.sort(rng.choice(len(points), min(len(points), 64 * lists), False))]
    centroids = sample[np.sort(rng.choice(len(sample), lists, False))]
    for _ in range(rounds):
        labels = np.argmax(sample @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, sample)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids)
    return centroids


def exact_pairs(queries, base, pairs_q: np.ndarray, pairs_b: np.ndarray) -> np.ndarray:
    """The dot products of query rows `pairs_q` with base rows `pairs_b`, pair by pair."""
    step = 100_000
    return np.concatenate([np.asarray(queries[pairs_q[s:s + step]].multiply(
        base[pairs_b[s:s + step]]).sum(axis=1)).ravel() for s in range(0, len(pairs_q), step)]
        or [np.zeros(0)])


class Index:
    """The inverted file of one base: its projected rows clustered into lists, and its
    rows restricted to rare words; built once, searched many times."""

    def __init__(self, base, lists: int | None = None, seed: int = SEED):
        self.dense, self.seed = not sp.issparse(base), seed
        self.base = sp.csr_matrix(base)
        self.points = self.near(self.base)
        self.centroids = clusters(self.points, lists or max(1, self.base.shape[0] // LIST_SIZE),
                                  seed)
        labels = np.concatenate([np.argmax(self.points[s:s + CHUNK] @ self.centroids.T, axis=1)
                                 for s in range(0, len(self.points), CHUNK)])
        self.order = np.argsort(labels, kind="stable")
        self.starts = np.searchsorted(labels[self.order], np.arange(len(self.centroids) + 1))
        width = self.base.shape[1]
        self.rare = sp.diags((np.bincount(self.base.indices, minlength=width) <= RARE) * 1.0)
        self.rare_base = (self.base @ self.rare).tocsr()

    def near(self, rows) -> np.ndarray:
        """Rows as unit float32 points: sparse ones projected, dense ones (sentence
        embeddings, already few columns) as they are."""
        if not self.dense:
            return project(rows, self.base.shape[1], self.seed)
        points = rows.toarray().astype(np.float32)
        return points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, rows) of each query's `k` nearest base rows as far as the index
        finds them, most similar first, with exact cosines."""
        queries = sp.csr_matrix(queries)
        k, keep = min(k, self.base.shape[0]), max(RERANK, 3 * k)
        found_sims, found_rows = [], []
        for start in range(0, queries.shape[0], CHUNK):
            chunk = queries[start:start + CHUNK]
            rows = np.hstack([
                _candidates(self.near(chunk), self.points, self.centroids, self.order,
                            self.starts, keep),
                _sharing(chunk @ self.rare, self.rare_base, keep)])
            sims, rows = _reranked(chunk, self.base, rows, k)
            found_sims.append(sims)
            found_rows.append(rows)
        return np.vstack(found_sims), np.vstack(found_rows)


_built: dict[int, Index] = {}


def approximate(queries, base, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, rows) of each query's `k` nearest rows of `base` (unit rows, sparse or
    dense) by its Index, built on first use and kept while `base` lives."""
    if id(base) not in _built:
        _built[id(base)] = Index(base)
        weakref.finalize(base, _built.pop, id(base), None)
    return _built[id(base)].search(queries, k)


def _candidates(near: np.ndarray, points: np.ndarray, centroids: np.ndarray,
                order: np.ndarray, starts: np.ndarray, keep: int):
    """Each query's `keep` most similar rows (projected) among its probed lists; -1 where the
    lists held fewer."""
    probes = min(PROBES, len(centroids))
    probed = np.argpartition(-(near @ centroids.T), probes - 1, axis=1)[:, :probes]
    sims = np.full((len(near), probes * keep), -np.inf, dtype=np.float32)
    rows = np.full((len(near), probes * keep), -1, dtype=np.int64)
    by_list = np.argsort(probed, axis=None, kind="stable")
    asked, slot = np.divmod(by_list, probes)
    listed = probed.ravel()[by_list]
    bounds = np.searchsorted(listed, np.arange(len(centroids) + 1))
    for lst in range(len(centroids)):
        who, where = asked[bounds[lst]:bounds[lst + 1]], slot[bounds[lst]:bounds[lst + 1]]
        members = order[starts[lst]:starts[lst + 1]]
        if not len(who) or not len(members):
            continue
        scores = near[who] @ points[members].T
        top = min(keep, len(members))
        best = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        columns = where[:, None] * keep + np.arange(top)
        sims[who[:, None], columns] = np.take_along_axis(scores, best, axis=1)
        rows[who[:, None], columns] = members[best]
    best = np.argsort(-sims, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(rows, best, axis=1)


def _repeated(rows: np.ndarray) -> np.ndarray:
    """Where a row of `rows` repeats one found earlier on its line."""
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    again = np.zeros(rows.shape, dtype=bool)
    np.put_along_axis(again, order[:, 1:], (ordered[:, 1:] == ordered[:, :-1])
                      & (ordered[:, 1:] >= 0), axis=1)
    return again


def _sharing(queries, base, keep: int) -> np.ndarray:
    """Each query's `keep` base rows with the largest dot product over rare words only (a
    short inverted list each); -1 where fewer rows share one."""
    rows = np.full((queries.shape[0], keep), -1, dtype=np.int64)
    for start in range(0, queries.shape[0], 1000):
        shared = (queries[start:start + 1000] @ base.T).tocsr()
        asked = np.repeat(np.arange(shared.shape[0]), np.diff(shared.indptr))
        order = np.argsort(asked - shared.data / (1 + shared.data.max(initial=0)),
                           kind="stable")
        rank = np.arange(shared.nnz) - shared.indptr[asked[order]]
        kept = order[rank < keep]
        rows[start + asked[kept], rank[rank < keep]] = shared.indices[kept]
    return rows


def _reranked(queries, base, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` of each query's candidate `rows` most similar by exact cosine; a query whose
    lists held fewer than `k` rows is compared with every base row."""
    rows = np.where(_repeated(rows), -1, rows)
    asked = np.repeat(np.arange(rows.shape[0]), rows.shape[1])
    exact = np.full(rows.shape, -np.inf)
    real = rows.ravel() >= 0
    exact.ravel()[real] = exact_pairs(queries, base, asked[real], rows.ravel()[real])
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    sims, found = np.take_along_axis(exact, order, axis=1), np.take_along_axis(rows, order, 1)
    short = np.flatnonzero((found < 0).any(axis=1))
    if len(short):  # rare: every base row, for these queries only
        dots = (queries[short] @ base.T).toarray()
        found[short] = np.argsort(-dots, axis=1, kind="stable")[:, :k]
        sims[short] = np.take_along_axis(dots, found[short], axis=1)
    return sims, found
