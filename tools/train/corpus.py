#!/usr/bin/env python3
"""Stage 1: build the Python code corpus from source files on this machine.

Sources
  * the interpreter's standard library (PSF licence), without site-packages;
  * installed distributions whose metadata declares only permissive licences
    (MIT, BSD, Apache, ISC, PSF, ...). Anything mentioning a copyleft licence
    (GPL, LGPL, AGPL, MPL, EPL, ...) or with no recognisable licence is skipped,
    and so are vendored sub-trees (`_vendor`, `third_party`, ...) whose licence
    may differ from their host package's.

Filtering: `.py` files only, UTF-8 decodable, non-empty, at most 1 MB, mean line
length at most 200 characters (data blobs, minified or generated tables).
Exact duplicates (SHA-256 of the normalised text) are kept once, first in the
sorted file order.

Split: by file, deterministic by content hash: a file goes to validation when
int(sha256[:8], 16) % 1000 < 30 (about 3 %).

Outputs
  tools/train/work/corpus/{train,valid}.txt   documents joined by <|endoftext|>
  tools/train/work/corpus/files.jsonl         every kept file with source, licence, split
  tools/train/corpus_manifest.json            committed statistics (tokens added by
                                              train_tokenizer.py)

Usage: python3 tools/train/corpus.py [--force]
"""
import argparse
import hashlib
import importlib.metadata as md
import json
import os
import re
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work", "corpus")
MANIFEST = os.path.join(HERE, "corpus_manifest.json")
EOT = "<|endoftext|>"

MAX_BYTES = 1_000_000
MAX_MEAN_LINE = 200
VALID_PER_MILLE = 30

VENDORED_DIRS = {
    "_vendor", "vendor", "vendored", "_vendored", "third_party", "_third_party",
    "thirdparty", "extern", "_extern", "externals",
}

COPYLEFT = re.compile(r"\b(A?L?GPL|AGPL|LGPL|GPL|General Public|MPL|Mozilla|EPL|Eclipse|CDDL|EUPL|OSL|SSPL|Commons Clause)", re.I)
PERMISSIVE = [
    (re.compile(r"^(MIT|MIT-0|MIT License|MIT license|Expat)$", re.I), "MIT"),
    (re.compile(r"^(0?BSD|BSD[- ].*|BSD License|Modified BSD License|New BSD License)$", re.I), "BSD"),
    (re.compile(r"^(Apache.*|ASL ?2(\.0)?|Apache Software License)$", re.I), "Apache-2.0"),
    (re.compile(r"^(ISC.*)$", re.I), "ISC"),
    (re.compile(r"^(PSF.*|Python Software Foundation License|Python|CNRI-Python)$", re.I), "PSF"),
    (re.compile(r"^(Zlib|BSL-1\.0|CC0-1\.0|Unlicense|Public Domain|LLVM-exception|WITH LLVM-exception)$", re.I), "other-permissive"),
]


def classify_term(term: str):
    term = term.strip().strip("()").strip()
    if not term:
        return None
    for rx, name in PERMISSIVE:
        if rx.match(term):
            return name
    return "?"


def licence_of(dist):
    """Return (verdict, description): verdict is 'permissive', 'copyleft' or 'unknown'."""
    meta = dist.metadata
    expr = (meta.get("License-Expression") or "").strip()
    text = (meta.get("License") or "").strip()
    classifiers = [c.split("::")[-1].strip() for c in (meta.get_all("Classifier") or [])
                   if c.startswith("License ::")]
    short_text = text if text and len(text) <= 80 and "\n" not in text else ""
    everything = " | ".join([expr, short_text] + classifiers)
    if COPYLEFT.search(everything) or (text and COPYLEFT.search(text[:400])):
        return "copyleft", everything
    candidates = []
    if expr:
        candidates.append([t for t in re.split(r"\s+(?:AND|OR|WITH)\s+", expr)])
    if classifiers:
        candidates.append([c for c in classifiers if c != "OSI Approved"])
    if short_text and short_text.upper() != "UNKNOWN":
        candidates.append([short_text])
    for terms in candidates:
        kinds = [classify_term(t) for t in terms]
        kinds = [k for k in kinds if k is not None]
        if kinds and "?" not in kinds:
            return "permissive", everything
    return "unknown", everything


def read_source(path):
    try:
        size = os.path.getsize(path)
        if size == 0:
            return None, "empty"
        if size > MAX_BYTES:
            return None, "over-1MB"
        with open(path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "encoding"
    except OSError:
        return None, "unreadable"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if EOT in text:
        return None, "contains-eot"
    if not text.strip():
        return None, "empty"
    lines = text.count("\n") + 1
    if len(text) / lines > MAX_MEAN_LINE:
        return None, "long-lines"
    if not text.endswith("\n"):
        text += "\n"
    return text, None


def stdlib_files():
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    out = []
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "dist-packages", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py"):
                full = os.path.join(root, name)
                out.append(("stdlib/" + os.path.relpath(full, stdlib), full))
    return stdlib, out


def package_files(stats):
    by_name = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in by_name:
            by_name[name.lower()] = dist
    out = []
    for key in sorted(by_name):
        dist = by_name[key]
        verdict, desc = licence_of(dist)
        name = dist.metadata["Name"]
        files = sorted(str(f) for f in (dist.files or []) if str(f).endswith(".py"))
        entry = {"licence": desc, "verdict": verdict, "py_files": len(files)}
        if verdict != "permissive":
            stats["packages_skipped"][name] = entry
            continue
        stats["packages_used"][name] = entry
        for rel in files:
            parts = rel.split("/")
            if rel.startswith("..") or any(p in VENDORED_DIRS for p in parts[:-1]):
                continue
            full = os.path.realpath(os.path.join(str(dist.locate_file("")), rel))
            out.append((f"site-packages/{name}/{rel}", full, name))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even if the outputs exist")
    args = ap.parse_args()
    outs = [os.path.join(WORK, n) for n in ("train.txt", "valid.txt", "files.jsonl")]
    if not args.force and all(os.path.exists(p) for p in outs) and os.path.exists(MANIFEST):
        print("corpus: outputs exist, nothing to do (use --force to rebuild)")
        return 0
    os.makedirs(WORK, exist_ok=True)

    stats = {"packages_used": {}, "packages_skipped": {}, "skipped_files": {}}
    stdlib_root, std = stdlib_files()
    candidates = [(key, path, "python-stdlib") for key, path in std] + package_files(stats)
    candidates.sort(key=lambda c: c[0])

    seen = set()
    kept = []
    skipped = stats["skipped_files"]
    for key, path, source in candidates:
        text, why = read_source(path)
        if text is None:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest in seen:
            skipped["duplicate"] = skipped.get("duplicate", 0) + 1
            continue
        seen.add(digest)
        split = "valid" if int(digest[:8], 16) % 1000 < VALID_PER_MILLE else "train"
        kept.append((key, source, digest, split, text))

    splits = {"train": {"files": 0, "bytes": 0}, "valid": {"files": 0, "bytes": 0}}
    list_hash = hashlib.sha256()
    handles = {s: open(os.path.join(WORK, f"{s}.txt.tmp"), "w", encoding="utf-8") for s in splits}
    with open(os.path.join(WORK, "files.jsonl.tmp"), "w") as flist:
        for key, source, digest, split, text in kept:
            h = handles[split]
            if splits[split]["files"]:
                h.write(EOT)
            h.write(text)
            splits[split]["files"] += 1
            splits[split]["bytes"] += len(text.encode("utf-8"))
            flist.write(json.dumps({"path": key, "source": source, "sha256": digest, "split": split}) + "\n")
            list_hash.update(f"{key}\t{digest}\t{split}\n".encode())
    for h in handles.values():
        h.close()
    for name in ("train.txt", "valid.txt", "files.jsonl"):
        os.replace(os.path.join(WORK, name + ".tmp"), os.path.join(WORK, name))

    total = sum(s["files"] for s in splits.values())
    frac = splits["valid"]["files"] / total
    assert frac >= 0.02, f"validation holds only {frac:.3%} of files"

    previous = {}
    if os.path.exists(MANIFEST):
        with open(MANIFEST) as f:
            previous = json.load(f)
    manifest = {
        "description": "Python source corpus for the SpecServe code models (tools/train/corpus.py)",
        "python": sys.version.split()[0],
        "separator": EOT,
        "filters": {"max_bytes": MAX_BYTES, "max_mean_line_chars": MAX_MEAN_LINE,
                    "valid_rule": f"int(sha256[:8],16) % 1000 < {VALID_PER_MILLE}",
                    "vendored_dirs_skipped": sorted(VENDORED_DIRS)},
        "file_list_sha256": list_hash.hexdigest(),
        "splits": splits,
        "valid_fraction_files": round(frac, 4),
        "skipped_files": dict(sorted(skipped.items())),
        "licences": {
            "python-stdlib": "PSF-2.0",
            "packages_used": stats["packages_used"],
            "packages_skipped": stats["packages_skipped"],
        },
    }
    same_files = previous.get("file_list_sha256") == manifest["file_list_sha256"]
    if same_files and "tokenizer" in previous:
        manifest["tokenizer"] = previous["tokenizer"]
        for s in splits:
            if "tokens" in previous["splits"].get(s, {}):
                splits[s]["tokens"] = previous["splits"][s]["tokens"]
                splits[s]["bytes_per_token"] = previous["splits"][s]["bytes_per_token"]
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"corpus: {total} files kept "
          f"(train {splits['train']['files']} files / {splits['train']['bytes']:,} bytes, "
          f"valid {splits['valid']['files']} files / {splits['valid']['bytes']:,} bytes); "
          f"skipped {skipped}; {len(stats['packages_used'])} packages used, "
          f"{len(stats['packages_skipped'])} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
