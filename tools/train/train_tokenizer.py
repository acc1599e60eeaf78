#!/usr/bin/env python3
"""Stage 2: train the byte-level BPE tokenizer and encode the corpus.

Tokenizer: HF tokenizers BPE, vocabulary 8192 with the special token
<|endoftext|> as id 0, ByteLevel pre-tokenizer (add_prefix_space false, GPT-2
split regex), ByteLevel decoder, no normalizer, trained on the train split only
(document by document, so the separator never takes part in merges).

Outputs
  models/specserve-code/tokenizer.json          (skipped when it exists: it is final)
  tools/train/work/tokens/{train,valid}.bin     uint16 token ids, documents joined by id 0
  tools/train/corpus_manifest.json              tokens per split and bytes/token filled in

Usage: python3 tools/train/train_tokenizer.py [--retrain] [--reencode]
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CORPUS = os.path.join(HERE, "work", "corpus")
TOKENS = os.path.join(HERE, "work", "tokens")
MANIFEST = os.path.join(HERE, "corpus_manifest.json")
TOKENIZER = os.path.join(ROOT, "models", "specserve-code", "tokenizer.json")
EOT = "<|endoftext|>"
VOCAB = 8192


def documents(split):
    with open(os.path.join(CORPUS, f"{split}.txt"), encoding="utf-8") as f:
        text = f.read()
    return text.split(EOT)


def train(path):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    docs = documents("train")
    t0 = time.time()
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    assert tok.token_to_id(EOT) == 0, "end-of-text must be id 0"
    assert tok.get_vocab_size() == VOCAB, f"vocabulary is {tok.get_vocab_size()}, expected {VOCAB}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tok.save(path, pretty=True)
    print(f"tokenizer: trained on {len(docs)} documents in {time.time() - t0:.0f}s -> {path}")


def encode(tok, split):
    docs = documents(split)
    out = os.path.join(TOKENS, f"{split}.bin")
    chunks = []
    batch = 512
    for i in range(0, len(docs), batch):
        for enc in tok.encode_batch(docs[i:i + batch], add_special_tokens=False):
            chunks.append(np.asarray(enc.ids, dtype=np.uint16))
            chunks.append(np.zeros(1, dtype=np.uint16))
    ids = np.concatenate(chunks[:-1])  # separators between documents only
    tmp = out + ".tmp"
    ids.tofile(tmp)
    os.replace(tmp, out)
    return int(ids.size)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--retrain", action="store_true", help="retrain even though tokenizer.json exists")
    ap.add_argument("--reencode", action="store_true", help="re-encode the splits even if encoded")
    args = ap.parse_args()

    if args.retrain or not os.path.exists(TOKENIZER):
        train(TOKENIZER)
    else:
        print(f"tokenizer: {TOKENIZER} exists, keeping it")
    tok = Tokenizer.from_file(TOKENIZER)
    with open(TOKENIZER, "rb") as f:
        tok_sha = hashlib.sha256(f.read()).hexdigest()

    with open(MANIFEST) as f:
        manifest = json.load(f)
    os.makedirs(TOKENS, exist_ok=True)
    fresh = manifest.get("tokenizer", {}).get("sha256") == tok_sha
    for split, info in manifest["splits"].items():
        path = os.path.join(TOKENS, f"{split}.bin")
        if not args.reencode and fresh and os.path.exists(path) and "tokens" in info \
                and os.path.getsize(path) == 2 * info["tokens"]:
            print(f"tokens: {split} already encoded ({info['tokens']:,} tokens)")
            continue
        t0 = time.time()
        n = encode(tok, split)
        info["tokens"] = n
        info["bytes_per_token"] = round(info["bytes"] / n, 3)
        print(f"tokens: {split} {n:,} tokens, {info['bytes_per_token']} bytes/token ({time.time() - t0:.0f}s)")
    manifest["tokenizer"] = {"path": "models/specserve-code/tokenizer.json", "sha256": tok_sha,
                             "vocab_size": tok.get_vocab_size(), "eot_id": 0}
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")

    sample = "def fibonacci(n):\n    if n < 2:\n        return n\n"
    enc = tok.encode(sample)
    assert tok.decode(enc.ids) == sample, "round trip failed"
    print(f"sample: {len(sample)} chars -> {len(enc.ids)} tokens {enc.tokens}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
