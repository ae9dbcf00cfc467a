"""Reference fixtures for GPT-NeoX's weighted blending, for tests/data_blend.test.ts.

Run from the repository root:  python3 tools/make_blend_fixtures.py
Writes tests/fixtures/data/blend_golden.json. Needs numpy (its legacy RandomState is the shuffle).

A small, independent re-statement of what GPT-NeoX does (megatron/data/data_utils.py,
gpt2_dataset.py, blendable_dataset.py, helpers.cpp), step by step with the same float arithmetic:
  - weights / sum(weights) with Python's sum; each dataset asks for ceil(N * w * 1.005) samples
    (None with train_epochs, which builds exactly one epoch of each dataset)
  - weight_by_num_documents: p = n / total, q = p ** alpha / sum, w = q * (1 - p) / sum
  - per dataset (all of its documents, one RandomState(seed)): epochs = the fewest with
    (E * tokens - 1) // L >= N; doc_idx = documents tiled E times as int32, shuffled; sample_idx as
    build_sample_idx walks it; shuffle_idx = arange(len(sample_idx) - 1) as uint32, shuffled
  - len(dataset) = min(len(shuffle_idx) - 1, len(sample_idx) - 1); reading index i >= len(shuffle_idx)
    falls back to i % len(dataset)
  - blend size = sum of len(dataset); weights / np.sum(weights); sample k goes to the dataset with the
    largest w_d * max(k, 1) - used_d (first one on ties), as its sample number used_d
  - a sample is seq_length + 1 tokens from the packed stream; label samples pad with -100.
Token values are a fixed function of (dataset, document, position) that the test reproduces.
"""

import json
import math
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "data", "blend_golden.json")


def token(ds, doc, pos):
    return (ds * 1000003 + doc * 7919 + pos * 31) % 50000 + 2


def label(ds, doc, pos, masked):
    return -100 if pos < masked else token(ds, doc, pos)


def normalize(weights, num_samples):
    total = sum(weights)
    assert total > 0.0
    w = [x / total for x in weights]
    if num_samples is None:
        return w, [None for _ in w]
    return w, [int(math.ceil(num_samples * x * 1.005)) for x in w]


def by_num_docs(counts, alpha):
    if len(counts) == 1:
        return [1.0]
    total = sum(counts)
    p = [c / total for c in counts]
    q = [x ** alpha for x in p]
    qs = sum(q)
    q = [x / qs for x in q]
    w = [a * (1 - b) for a, b in zip(q, p)]
    ws = sum(w)
    return [x / ws for x in w]


def epochs_needed(tokens, seq_length, num_samples):
    e = 0
    while True:
        e += 1
        if (e * tokens - 1) // seq_length >= num_samples:
            return e


def walk_samples(sizes, doc_idx, seq_length, epochs, tokens):
    count = (epochs * tokens - 1) // seq_length
    out = [[0, 0]]
    d, off = 0, 0
    while len(out) <= count:
        need = seq_length + 1
        while need != 0:
            left = int(sizes[doc_idx[d]]) - off
            need -= left
            if need <= 0:
                off += need + left - 1
                need = 0
            else:
                d += 1
                off = 0
        out.append([d, off])
    return out


class Dataset:
    def __init__(self, ds_id, sizes, num_samples, num_epochs, seq_length, seed, masked=None):
        self.ds_id = ds_id
        self.sizes = np.asarray(sizes, dtype=np.int32)
        self.seq_length = seq_length
        self.masked = masked  # tokens masked at the start of each document, or None: no label file
        documents = np.arange(len(sizes), dtype=np.int32)
        tokens = int(np.sum(self.sizes[documents]))
        epochs = num_epochs if num_epochs else epochs_needed(tokens, seq_length, num_samples)
        rng = np.random.RandomState(seed=seed)
        doc_idx = np.tile(documents, epochs).astype(np.int32)
        rng.shuffle(doc_idx)
        self.doc_idx = doc_idx
        self.sample_idx = walk_samples(self.sizes, doc_idx, seq_length, epochs, tokens)
        shuffle_idx = np.arange(len(self.sample_idx) - 1, dtype=np.uint32)
        rng.shuffle(shuffle_idx)
        self.shuffle_idx = shuffle_idx
        self.epochs = epochs
        self.length = min(len(self.shuffle_idx) - 1, len(self.sample_idx) - 1)

    def resolve(self, i):
        return i if i < len(self.shuffle_idx) else i % self.length

    def stream(self, k, value):
        (d0, o0), (d1, o1) = self.sample_idx[k], self.sample_idx[k + 1]
        out = []
        for d in range(d0, d1 + 1):
            doc = int(self.doc_idx[d])
            start = o0 if d == d0 else 0
            stop = o1 + 1 if d == d1 else int(self.sizes[doc])
            out.extend(value(doc, p) for p in range(start, stop))
        return out[: self.seq_length + 1]

    def text(self, i):
        k = int(self.shuffle_idx[self.resolve(i)])
        return self.stream(k, lambda doc, p: token(self.ds_id, doc, p))

    def labels(self, i):
        k = int(self.shuffle_idx[self.resolve(i)])
        if self.masked is None:
            return self.stream(k, lambda doc, p: token(self.ds_id, doc, p))
        out = self.stream(k, lambda doc, p: label(self.ds_id, doc, p, self.masked))
        return out + [-100] * (self.seq_length + 1 - len(out))


def blending(weights, size):
    used = [0] * len(weights)
    which, nth = [], []
    for k in range(size):
        s = float(max(k, 1))
        best, err = 0, weights[0] * s - float(used[0])
        for d in range(1, len(weights)):
            e = weights[d] * s - float(used[d])
            if e > err:
                best, err = d, e
        which.append(best)
        nth.append(used[best])
        used[best] += 1
    return which, nth


def sizes_for(seed, n, lo, hi):
    rs = np.random.RandomState(seed)
    return [int(x) for x in rs.randint(lo, hi, size=n)]


def case(name, datasets, seq_length, seed, num_samples=None, weights=None, by_docs=False, alpha=1.0,
         epochs_mode=False, masked=None, samples_out=None):
    masked = masked or {}
    if weights is None:
        weights = [1.0] * len(datasets)
    n = None if epochs_mode else num_samples
    if by_docs:
        weights_used = by_num_docs([len(s) for s in datasets], alpha)
    else:
        weights_used = list(weights)
    w1, counts = normalize(weights_used, n)
    built = [
        Dataset(i, sizes, counts[i], 1 if epochs_mode else None, seq_length, seed, masked.get(i))
        for i, sizes in enumerate(datasets)
    ]
    size = sum(d.length for d in built)
    w2 = np.array(w1, dtype=np.float64)
    w2 /= np.sum(w2)
    which, nth = blending([float(x) for x in w2], size)
    picks = range(size) if samples_out is None else samples_out
    samples = []
    for k in picks:
        d = built[which[k]]
        entry = {"k": k, "text": d.text(nth[k])}
        if masked:
            entry["labels"] = d.labels(nth[k])
        samples.append(entry)
    return {
        "name": name,
        "seq_length": seq_length,
        "seed": seed,
        "num_samples": n,
        "train_epochs": epochs_mode,
        "weights": weights,
        "weight_by_num_documents": by_docs,
        "weighted_sampler_alpha": alpha,
        "masked": {str(k): v for k, v in masked.items()},
        "datasets": [{"sizes": [int(x) for x in s]} for s in datasets],
        "normalized_weights": w1,
        "dataset_num_samples": counts,
        "blend_weights": [float(x) for x in w2],
        "per_dataset": [
            {
                "num_epochs": d.epochs,
                "length": d.length,
                "doc_idx": [int(x) for x in d.doc_idx],
                "sample_idx": [int(x) for pair in d.sample_idx for x in pair],
                "shuffle_idx": [int(x) for x in d.shuffle_idx],
            }
            for d in built
        ],
        "size": size,
        "dataset_index": which,
        "dataset_sample_index": nth,
        "samples": samples,
    }


def main():
    cases = [
        case("two_equal", [sizes_for(1, 12, 1, 20), sizes_for(2, 9, 3, 30)], 8, 1234, num_samples=40),
        case("three_weighted", [sizes_for(3, 10, 1, 15), sizes_for(4, 20, 1, 8), sizes_for(5, 6, 10, 40)], 7, 42,
             num_samples=60, weights=[0.3, 0.3, 0.4]),
        case("one_path", [sizes_for(6, 15, 2, 25)], 5, 7, num_samples=30),
        # a dataset that gives far more samples than asked inflates the blend, so the other one is
        # read past its end and wraps (GPT-NeoX's IndexError fallback)
        case("wraps", [sizes_for(7, 4, 3, 6), sizes_for(8, 5, 200, 260)], 6, 99, num_samples=12, weights=[1.0, 1.0]),
        case("by_num_docs_alpha_0_3", [sizes_for(9, 30, 1, 6), sizes_for(10, 5, 1, 6), sizes_for(11, 12, 1, 6)], 4,
             1234, num_samples=50, by_docs=True, alpha=0.3),
        case("by_num_docs_alpha_1", [sizes_for(12, 8, 1, 9), sizes_for(13, 16, 1, 9)], 4, 3, num_samples=30,
             by_docs=True, alpha=1.0),
        # ten datasets: np.sum takes its 8-accumulator path; weights with no exact binary form
        case("ten_datasets", [sizes_for(20 + i, 6 + i, 1, 12) for i in range(10)], 6, 2024, num_samples=120,
             weights=[0.1, 0.7, 0.33, 1.9, 0.05, 0.2, 0.6, 0.6, 1.1, 0.01]),
        case("train_epochs", [sizes_for(14, 7, 2, 20), sizes_for(15, 11, 2, 20)], 8, 1234, epochs_mode=True),
        case("labels", [sizes_for(16, 10, 4, 20), sizes_for(17, 10, 4, 20)], 8, 5, num_samples=30,
             masked={0: 3}),
        case("larger", [sizes_for(18, 300, 1, 200), sizes_for(19, 200, 1, 300), sizes_for(30, 50, 1, 1000)], 64,
             1234, num_samples=2000, weights=[2.0, 1.0, 0.5], samples_out=[0, 1, 2, 3, 500, 1999, 2000, 2500]),
    ]
    with open(OUT, "w") as f:
        json.dump({"numpy": np.__version__, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    for c in cases:
        over = [max([n for w, n in zip(c["dataset_index"], c["dataset_sample_index"]) if w == d] or [0])
                for d in range(len(c["datasets"]))]
        print(f'{c["name"]}: size {c["size"]}, per-dataset max sample index {over}, lengths '
              f'{[p["length"] for p in c["per_dataset"]]}')
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
