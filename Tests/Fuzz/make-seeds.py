#!/usr/bin/env python3
"""Seed inputs for the fuzz targets (Tests/Fuzz/corpus/<target>/). Rerun to rebuild them:

    python3 Tests/Fuzz/make-seeds.py

The safetensors seeds are written by the `safetensors` package and the tokenizer seeds are trained by Hugging Face
`tokenizers`, so that every seed is a file the reference implementations produce; the rest are hand-written
requests, valid ones and the edge cases the parsers have to refuse. Each seed starts with the bytes its target
reads as selectors (see the target's source).
"""
import json
import shutil
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import save
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

CORPUS = Path(__file__).resolve().parent / "corpus"
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Split selectors: 0 whole, 1 byte by byte, 2|(n-1)<<2 slices of n bytes, 3 and other odd values varying slices.
WHOLE, BYTES, FIXED3, VARYING = b"\x00", b"\x01", bytes([2 | (2 << 2)]), b"\x07"
DEFAULT_LIMITS, SMALL_LIMITS = b"\x00", b"\x01"

HTTP = {
    "get": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "get-http10": b"GET /v1/models HTTP/1.0\r\n\r\n",
    "post-length": b"POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 42\r\n\r\n{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":4}",
    "post-chunked": b"POST /v1/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n",
    "pipelined": b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                 b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "expect-continue": b"POST /v1/completions HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    "list-length": b"PUT /x?q=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 5, 5\r\nX-Empty:\r\n\r\nhello",
    "smuggle-cl-te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n",
    "http2": b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\nHost: a\n\n",
    "huge-length": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "long-line": b"GET /" + b"a" * 60 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "many-headers": b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"\r\n",
}

CHUNKED = {
    "simple": b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
    "extensions-trailers": b"4;a=b;c=\"d\"\r\nWiki\r\nD \t;x\r\n in\r\n\r\nchunks\r\n0\r\nExpires: never\r\nX: y\r\n\r\nGET / HTTP/1.1",
    "upper-hex": b"0000A\r\n0123456789\r\n0\r\n\r\n",
    "empty": b"0\r\n\r\n",
    "bare-lf": b"4\nWiki\n0\n\n",
    "overflow": b"ffffffffffffffffffff\r\n",
    "no-crlf-after-data": b"3\r\nabcX\r\n0\r\n\r\n",
    "space-no-ext": b"3 \r\nabc\r\n0\r\n\r\n",
}

COMPLETIONS = {
    "minimal": {"model": "m", "prompt": "Hello"},
    "full": {"model": "specserve-code", "prompt": ["def f(x):"], "max_tokens": 64, "temperature": 0.7, "top_p": 0.9,
             "top_k": 40, "min_p": 0.05, "stop": ["\n\n", "###"], "seed": -1, "stream": True,
             "stream_options": {"include_usage": True}, "echo": False, "n": 1, "best_of": 1, "logprobs": None,
             "suffix": None, "frequency_penalty": 0, "presence_penalty": 0.0, "logit_bias": {}, "user": "u",
             "speculative": {"method": "ngram", "num_tokens": 4}},
    "token-ids": {"model": "m", "prompt": [1, 2, 3, 50256], "max_tokens": 1, "temperature": 0},
    "nested-ids": {"model": "m", "prompt": [[0, 7]], "stop": None, "top_k": -1},
    "bad-types": {"model": 1, "prompt": {}, "max_tokens": "16"},
    "unknown-key": {"model": "m", "prompt": "x", "max_token": 3},
}
COMPLETION_TEXTS = {
    "escapes": b'{"model":"m","prompt":"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/\\b\\f\\r","stop":"\\u0000"}',
    "numbers": b'{"model":"m","prompt":"p","temperature":1e-3,"top_p":1.0E0,"seed":-9223372036854775808,"max_tokens":2.0}',
    "huge-seed": b'{"model":"m","prompt":"p","seed":18446744073709551615}',
    "duplicate-key": b'{"model":"m","model":"n","prompt":"p"}',
    "deep": b'{"model":"m","prompt":' + b"[" * 70 + b"]" * 70 + b"}",
    "trailing": b'{"model":"m","prompt":"p"} x',
    "lone-surrogate": b'{"model":"m","prompt":"\\udc00"}',
    "invalid-utf8": b'{"model":"m","prompt":"\xff\xfe"}',
}


def safetensors_seeds():
    rng = np.random.default_rng(0)
    files = {
        "f32-f16-bf16": save({"w": rng.standard_normal((2, 3)).astype(np.float32),
                              "h": rng.standard_normal(4).astype(np.float16),
                              "i": np.arange(3, dtype=np.int64), "e": np.zeros((0, 5), dtype=np.float32)},
                             metadata={"format": "pt"}),
        "scalar-u8-bool": save({"s": np.array(1.5, dtype=np.float32), "u": np.arange(5, dtype=np.uint8),
                                "b": np.array([True, False])}),
    }
    # BF16 has no numpy type: write its header by hand, in the same layout.
    header = json.dumps({"b": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    files["bf16"] = struct.pack("<Q", len(header)) + header + b"\x80\x3f\x00\x40"
    seeds = {}
    for name, data in files.items():
        seeds["file-" + name] = b"\x00" + data
        length = struct.unpack("<Q", data[:8])[0]
        seeds["json-" + name] = b"\x01" + data[8:8 + length] + b"\x00" + data[8 + length:]
    bad = {
        "overlap": {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}},
        "size-mismatch": {"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 4]}},
        "huge-shape": {"a": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}},
        "unknown-dtype": {"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}},
        "metadata-int": {"__metadata__": {"n": 1}},
    }
    for name, obj in bad.items():
        seeds["json-" + name] = b"\x01" + json.dumps(obj).encode() + b"\x00" + bytes(8)
    seeds["file-length-past-end"] = b"\x00" + struct.pack("<Q", 1 << 63) + b"{}"
    return seeds


def tokenizer_seeds():
    text = ("def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n    y: int = 0\n"
            "print('hello, world', 3.14, [1, 2, 3])  # naïve café\n") * 4
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator([text], trainer)
    tok.add_tokens([AddedToken("<|cursor|>", normalized=True)])
    seeds = {"bytelevel": tok.to_str()}

    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    # The template ends on the highest id (an added token), so that mutations reach ids past the vocabulary.
    eot, cursor = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|cursor|>")
    tok.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A <|cursor|>",
                                                       special_tokens=[("<|endoftext|>", eot), ("<|cursor|>", cursor)])
    seeds["split-template"] = tok.to_str()

    data = json.loads(seeds["bytelevel"])
    data["model"]["ignore_merges"] = True
    data["added_tokens"].append({"id": 301, "content": " end", "single_word": True, "lstrip": True, "rstrip": True,
                                 "normalized": False, "special": False})
    seeds["ignore-merges-strip"] = json.dumps(data, ensure_ascii=False)
    out = {name: s.encode() for name, s in seeds.items()}
    # The same file followed by a text to encode.
    out["bytelevel-with-text"] = out["bytelevel"] + b"\x00<|endoftext|>def  f(x):\n\treturn x  # ok \xf0\x9f\x99\x82"
    return out


def write(target, seeds):
    folder = CORPUS / target
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in seeds.items():
        (folder / name).write_bytes(data)


def main():
    selectors = [(WHOLE, DEFAULT_LIMITS), (BYTES, DEFAULT_LIMITS), (FIXED3, SMALL_LIMITS), (VARYING, DEFAULT_LIMITS)]
    http = {f"{name}-{i}": sel + lim + data for name, data in HTTP.items()
            for i, (sel, lim) in enumerate(selectors) if i == 0 or name in ("post-chunked", "pipelined", "expect-continue")}
    for name in ("long-line", "many-headers", "post-chunked"):  # over the small limits
        http[f"{name}-small"] = WHOLE + SMALL_LIMITS + HTTP[name]
    write("http-parser", http)
    write("chunked-decoder", {f"{name}-{i}": sel + lim + data for name, data in CHUNKED.items()
                              for i, (sel, lim) in enumerate(selectors) if i == 0 or name == "extensions-trailers"})
    completions = {name: json.dumps(body, ensure_ascii=False).encode() for name, body in COMPLETIONS.items()}
    write("completion-request", {**completions, **COMPLETION_TEXTS})
    write("safetensors-header", safetensors_seeds())
    write("tokenizer-json", tokenizer_seeds())


if __name__ == "__main__":
    main()
