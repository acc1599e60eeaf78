#!/usr/bin/env python3
"""Token counts of the training split, for drafting with a vocabulary subset.

The engine can score draft tokens against only the N most frequent tokens of the training corpus
(`speculation.draft.vocabulary`, `speculation.mtp.vocabulary`); this file ranks them. It counts every token id
of tools/train/work/tokens/train.bin (the split the models were trained on; the validation split is not read,
so coverage figures measured on it are fair) and writes, beside the target model:

  token_frequency.json  {"description", "source", "tokens", "counts": [count of id 0, id 1, ...],
                         "validation_coverage": {N: share of validation tokens among the N most frequent}}

Usage: python3 tools/train/token_frequency.py [--out models/specserve-code/token_frequency.json]
"""
import argparse
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = os.path.join(HERE, "work", "tokens")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "models", "specserve-code", "token_frequency.json"))
    ap.add_argument("--vocab", type=int, default=8192)
    args = ap.parse_args()
    train = np.memmap(os.path.join(TOKENS, "train.bin"), dtype=np.uint16, mode="r")
    valid = np.memmap(os.path.join(TOKENS, "valid.bin"), dtype=np.uint16, mode="r")
    counts = np.bincount(train, minlength=args.vocab)
    assert len(counts) == args.vocab, f"token ids beyond the vocabulary ({len(counts)} > {args.vocab})"
    # The engine's ranking: most frequent first, ties by lower id (a stable sort of -count).
    order = np.argsort(-counts, kind="stable")
    valid_counts = np.bincount(valid, minlength=args.vocab)
    coverage = {str(n): round(float(valid_counts[order[:n]].sum() / valid_counts.sum()), 4)
                for n in (512, 1024, 2048, 3072, 4096, 6144)}
    out = {
        "description": "Occurrences of each token id in the training split, indexed by id. The engine ranks tokens by "
                       "these counts (ties: lower id first) when a drafter scores only the N most frequent tokens.",
        "source": "tools/train/work/tokens/train.bin (training split of the corpus, see the model card)",
        "tokens": int(len(train)),
        "validation_coverage": coverage,
        "counts": [int(c) for c in counts],
    }
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"{args.out}: {len(train):,} tokens; validation coverage {coverage}")


if __name__ == "__main__":
    main()
