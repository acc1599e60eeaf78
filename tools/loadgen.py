#!/usr/bin/env python3
"""Load generator for a SpecServe server (or any OpenAI-compatible /v1/completions endpoint).

Python 3 standard library only: one thread per client, each with its own keep-alive http.client connection,
issuing its requests one after another. Server-Sent Events are parsed here.

    python3 tools/loadgen.py --url http://127.0.0.1:8080 --model specserve-code \\
        --clients 32 --requests 20 --max-tokens 32 --mix 1.0 --methods none,ngram,draft --check-greedy

The request plan is deterministic: request i (i = client * requests + r) takes prompt i mod P from --prompts and
method i mod M from --methods; a seeded draw (--seed) decides whether it streams (probability --mix) and whether
it samples (probability --sampled-fraction: temperature 0.8, top_p 0.95, seed 1000 + i) or is greedy
(temperature 0). So one client running C*R requests issues exactly the requests that C clients running R each
issue together.

--check-greedy first runs every distinct greedy request (prompt, method, max_tokens) alone, serially and
non-streaming, then checks that every greedy output of the concurrent run (streamed or not) equals its solo
output. Solo outputs of lossless methods for the same prompt must also agree with each other.

Reported (stdout, and --json FILE): requests run, errors by kind (http_<status>, transport:<exception>,
protocol:<what>, mismatch, deadline), aggregate completion tokens per second of the concurrent phase,
p50/p99 time to first token (streaming requests, client-measured), p50/p99 per-token latency (streaming:
client-measured from the first to the last text event; all requests: the server's predicted_ms per token after
the first), and the server overhead of non-streaming requests: client wall time minus the server's own
timings.prompt_ms + timings.predicted_ms + timings.queue_ms (the time the request waited for the engine;
servers without that field count it as overhead, so measure the overhead bar with --clients 1 there).

With --server-pid PID (a server on this machine), the server's resident memory is sampled once a second through
the concurrent phase and reported at the start, after the warm-up share (--warmup-fraction) and at the end; with
--max-rss-growth-mb the run fails when memory grows more than that after warm-up (a soak's "flat memory" check).

Every loop is bounded: C*R requests at most, nothing new is started after --duration-limit seconds, and each
socket read times out after --timeout seconds. Exit status 0 only when no request failed or mismatched.
"""

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list; None for an empty one."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values):
    return {"count": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "mean": (sum(values) / len(values)) if values else None}


class Plan:
    """One request of the plan."""

    def __init__(self, index, prompt_name, prompt, method, stream, sampled, max_tokens):
        self.index = index
        self.prompt_name = prompt_name
        self.prompt = prompt
        self.method = method
        self.stream = stream
        self.sampled = sampled
        self.max_tokens = max_tokens

    @property
    def greedy_key(self):
        return (self.prompt_name, self.method, self.max_tokens)

    def body(self, model, stream):
        b = {"model": model, "prompt": self.prompt, "max_tokens": self.max_tokens}
        if self.method:
            b["speculative"] = {"method": self.method}
        if self.sampled:
            b.update({"temperature": 0.8, "top_p": 0.95, "seed": 1000 + self.index})
        else:
            b["temperature"] = 0
        if stream:
            b["stream"] = True
            b["stream_options"] = {"include_usage": True}
        return b


def load_prompts(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    items = data["prompts"] if isinstance(data, dict) else data
    prompts = []
    for n, item in enumerate(items):
        if isinstance(item, str):
            prompts.append(("p%d" % n, item))
        else:
            prompts.append((item.get("name", "p%d" % n), item["text"]))
    if not prompts:
        raise ValueError("%s: no prompts" % path)
    return prompts


def make_plan(args, prompts):
    rng = random.Random(args.seed)
    methods = [m for m in args.methods.split(",") if m] if args.methods else [""]
    plan = []
    for i in range(args.clients * args.requests):
        name, text = prompts[i % len(prompts)]
        stream = rng.random() < args.mix
        sampled = rng.random() < args.sampled_fraction
        plan.append(Plan(i, name, text, methods[i % len(methods)], stream, sampled, args.max_tokens))
    return plan


class Result:
    def __init__(self, plan, stream):
        self.plan = plan
        self.stream = stream
        self.error = None          # kind string, or None
        self.detail = None
        self.text = ""
        self.completion_tokens = 0
        self.timings = None
        self.lossless = None
        self.wall_ms = None
        self.ttft_ms = None
        self.first_text_at = None
        self.last_text_at = None


class Client:
    """A keep-alive connection to the server; reconnects after a transport error or a closed connection."""

    def __init__(self, url, timeout, api_key):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            raise ValueError("--url: only http:// is supported")
        self.host = u.hostname
        self.port = u.port or 80
        self.base = u.path.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = "Bearer " + api_key
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def complete(self, model, plan, stream):
        r = Result(plan, stream)
        body = json.dumps(plan.body(model, stream)).encode("utf-8")
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        start = time.perf_counter()
        try:
            self.conn.request("POST", self.base + "/v1/completions", body=body, headers=self.headers)
            resp = self.conn.getresponse()
            if resp.status != 200:
                r.error = "http_%d" % resp.status
                r.detail = resp.read()[:300].decode("utf-8", "replace")
            elif stream:
                self._read_stream(resp, r, start)
            else:
                self._read_json(resp, r)
            if r.error is None and stream:
                resp.read()               # the rest of the body (the last chunk) so the connection can be reused
            if resp.will_close or r.error is not None or not resp.isclosed():
                self.close()
        except (OSError, http.client.HTTPException) as e:
            r.error = "transport:" + type(e).__name__
            r.detail = str(e)[:300]
            self.close()
        r.wall_ms = (time.perf_counter() - start) * 1e3
        return r

    @staticmethod
    def _read_json(resp, r):
        try:
            obj = json.loads(resp.read())
            r.text = obj["choices"][0]["text"]
            r.completion_tokens = obj["usage"]["completion_tokens"]
            r.timings = obj.get("timings")
            r.lossless = obj.get("metrics", {}).get("speculative_decoding", {}).get("lossless")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            r.error = "protocol:bad_json"
            r.detail = str(e)[:300]

    @staticmethod
    def _read_stream(resp, r, start):
        """Parses the event stream: `data:` lines joined per event, comments (`: ping`) skipped."""
        parts = []
        data_lines = []
        done = False
        finish_reason = None
        while not done:
            line = resp.readline()
            if not line:
                break
            line = line.decode("utf-8").rstrip("\r\n")
            if line.startswith(":"):
                continue
            if line.startswith("data:"):
                data_lines.append(line[5:][1:] if line[5:6] == " " else line[5:])
                continue
            if line != "" or not data_lines:
                continue                      # other fields (event:, id:) or a stray blank line
            data = "\n".join(data_lines)
            data_lines = []
            if data == "[DONE]":
                done = True
                break
            now = time.perf_counter()
            try:
                obj = json.loads(data)
            except ValueError:
                r.error = "protocol:bad_event"
                r.detail = data[:300]
                return
            if "error" in obj:
                r.error = "protocol:error_event"
                r.detail = json.dumps(obj["error"])[:300]
                return
            for choice in obj.get("choices") or []:
                text = choice.get("text") or ""
                if text:
                    if r.first_text_at is None:
                        r.first_text_at = now
                        r.ttft_ms = (now - start) * 1e3
                    r.last_text_at = now
                    parts.append(text)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
            if obj.get("timings"):
                r.timings = obj["timings"]
            sd = (obj.get("metrics") or {}).get("speculative_decoding")
            if sd:
                r.lossless = sd.get("lossless")
            if obj.get("usage"):
                r.completion_tokens = obj["usage"]["completion_tokens"]
        r.text = "".join(parts)
        if not done:
            r.error = "protocol:no_done"
        elif finish_reason is None:
            r.error = "protocol:no_finish_reason"
        elif not r.completion_tokens and r.timings:
            r.completion_tokens = r.timings.get("predicted_n", 0)


def read_rss_kb(pid):
    """Resident set size of process pid in KiB (Linux /proc), or None when it cannot be read."""
    try:
        with open("/proc/%d/status" % pid, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RSSSampler:
    """Samples a process's resident memory once a second on a thread until stopped."""

    def __init__(self, pid, interval=1.0):
        self.pid, self.interval = pid, interval
        self.samples = []                  # (seconds since start, KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._t0 = time.monotonic()
        self._thread.start()

    def _run(self):
        while True:
            kb = read_rss_kb(self.pid)
            if kb is not None:
                self.samples.append((time.monotonic() - self._t0, kb))
            if self._stop.wait(self.interval):
                return

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        kb = read_rss_kb(self.pid)
        if kb is not None:
            self.samples.append((time.monotonic() - self._t0, kb))

    def report(self, warmup_fraction):
        """Start, after-warm-up, end and peak RSS in MiB; growth is end minus after-warm-up."""
        if not self.samples:
            return None
        span = self.samples[-1][0]
        after = next(kb for t, kb in self.samples if t >= span * warmup_fraction)
        mib = lambda kb: round(kb / 1024.0, 1)
        return {"pid": self.pid, "samples": len(self.samples), "seconds": round(span, 1),
                "start_mib": mib(self.samples[0][1]), "after_warmup_mib": mib(after),
                "end_mib": mib(self.samples[-1][1]), "peak_mib": mib(max(kb for _, kb in self.samples)),
                "growth_after_warmup_mib": mib(self.samples[-1][1] - after),
                "warmup_fraction": warmup_fraction}


def run_solo(args, plan):
    """Each distinct greedy request alone, in order, non-streaming. Returns ({key: Result}, [error Results])."""
    client = Client(args.url, args.timeout, args.api_key)
    solo, failed = {}, []
    deadline = time.monotonic() + args.duration_limit
    try:
        for p in plan:
            if p.sampled or p.greedy_key in solo:
                continue
            if time.monotonic() > deadline:
                r = Result(p, False)
                r.error = "deadline"
                failed.append(r)
                continue
            r = client.complete(args.model, p, stream=False)
            if r.error:
                failed.append(r)
            else:
                solo[p.greedy_key] = r
    finally:
        client.close()
    return solo, failed


def run_concurrent(args, plan):
    results = [None] * len(plan)
    barrier = threading.Barrier(args.clients)
    deadline = [None]
    lock = threading.Lock()

    def worker(c):
        client = Client(args.url, args.timeout, args.api_key)
        barrier.wait()
        with lock:
            if deadline[0] is None:
                deadline[0] = time.monotonic() + args.duration_limit
        try:
            for k in range(args.requests):
                p = plan[c * args.requests + k]
                if time.monotonic() > deadline[0]:
                    r = Result(p, p.stream)
                    r.error = "deadline"
                else:
                    r = client.complete(args.model, p, stream=p.stream)
                    r.finished_at = time.perf_counter()
                results[p.index] = r
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(args.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration_limit + args.timeout * 2 + 10)
    elapsed = time.perf_counter() - start
    for i, r in enumerate(results):
        if r is None:                     # a thread still stuck past every limit
            r = Result(plan[i], plan[i].stream)
            r.error = "deadline"
            results[i] = r
    return results, elapsed


def main(argv=None):
    ap = argparse.ArgumentParser(description="Load generator for /v1/completions (standard library only).")
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL (default %(default)s)")
    ap.add_argument("--model", default="specserve-code", help="model id (default %(default)s)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default %(default)s)")
    ap.add_argument("--requests", type=int, default=10, help="requests per client (default %(default)s)")
    ap.add_argument("--max-tokens", type=int, default=32, help="max_tokens per request (default %(default)s)")
    ap.add_argument("--mix", type=float, default=1.0,
                    help="fraction of requests that stream, 0..1 (default %(default)s)")
    ap.add_argument("--methods", default="none,ngram,draft",
                    help="speculation methods rotated across requests; empty: the model's default (default %(default)s)")
    ap.add_argument("--sampled-fraction", type=float, default=0.0,
                    help="fraction of requests that sample (temperature 0.8, seeded) instead of greedy (default %(default)s)")
    ap.add_argument("--prompts", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config",
                                                      "bench_prompts.json"),
                    help="JSON prompt set: {\"prompts\": [{\"name\", \"text\"}]} or a list of strings (default config/bench_prompts.json)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the stream/sampled draws (default %(default)s)")
    ap.add_argument("--duration-limit", type=float, default=300.0,
                    help="seconds after which no new request starts, per phase (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=120.0, help="socket timeout per read, seconds (default %(default)s)")
    ap.add_argument("--check-greedy", action="store_true",
                    help="run each distinct greedy request alone first; every concurrent greedy output must equal it")
    ap.add_argument("--server-pid", type=int, default=None,
                    help="sample this process's resident memory (Linux /proc) through the concurrent phase")
    ap.add_argument("--warmup-fraction", type=float, default=0.25,
                    help="share of the concurrent phase counted as warm-up for the memory figures (default %(default)s)")
    ap.add_argument("--max-rss-growth-mb", type=float, default=None,
                    help="fail when resident memory grows by more than this after warm-up (needs --server-pid)")
    ap.add_argument("--api-key-env", default=None, help="environment variable holding a bearer key")
    ap.add_argument("--json", dest="json_out", default=None, help="write the report as JSON to this file")
    ap.add_argument("--quiet", action="store_true", help="print only the one-line summary")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.max_tokens < 1:
        ap.error("--clients, --requests and --max-tokens must be at least 1")
    if not (0 <= args.mix <= 1 and 0 <= args.sampled_fraction <= 1 and 0 <= args.warmup_fraction < 1):
        ap.error("--mix, --sampled-fraction and --warmup-fraction are fractions in 0..1")
    if args.max_rss_growth_mb is not None and args.server_pid is None:
        ap.error("--max-rss-growth-mb needs --server-pid")
    args.api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""

    plan = make_plan(args, load_prompts(args.prompts))
    errors = {}
    error_samples = []

    def count(r):
        errors[r.error] = errors.get(r.error, 0) + 1
        if len(error_samples) < 10:
            error_samples.append({"index": r.plan.index, "kind": r.error, "detail": r.detail})

    solo, solo_elapsed = {}, None
    if args.check_greedy:
        t0 = time.perf_counter()
        solo, solo_failed = run_solo(args, plan)
        solo_elapsed = time.perf_counter() - t0
        for r in solo_failed:
            count(r)
        # Lossless methods must agree with each other on the same prompt.
        by_prompt = {}
        for (name, method, _), r in solo.items():
            if r.lossless:
                by_prompt.setdefault(name, []).append((method, r.text))
        for name, outs in by_prompt.items():
            for method, text in outs[1:]:
                if text != outs[0][1]:
                    errors["mismatch:solo_methods"] = errors.get("mismatch:solo_methods", 0) + 1
                    if len(error_samples) < 10:
                        error_samples.append({"kind": "mismatch:solo_methods", "detail":
                                              "%s: %s vs %s" % (name, outs[0][0] or "default", method or "default")})

    sampler = None
    if args.server_pid is not None:
        if read_rss_kb(args.server_pid) is None:
            ap.error("--server-pid %d: no readable /proc/%d/status" % (args.server_pid, args.server_pid))
        sampler = RSSSampler(args.server_pid)
        sampler.start()
    results, elapsed = run_concurrent(args, plan)
    rss = None
    if sampler is not None:
        sampler.stop()
        rss = sampler.report(args.warmup_fraction)
        if (rss and args.max_rss_growth_mb is not None
                and rss["growth_after_warmup_mib"] > args.max_rss_growth_mb):
            errors["rss_growth"] = 1
            error_samples.append({"kind": "rss_growth", "detail": "%.1f MiB after warm-up (limit %.1f)" % (
                rss["growth_after_warmup_mib"], args.max_rss_growth_mb)})
    mismatches = 0
    for r in results:
        if r.error:
            count(r)
        elif args.check_greedy and not r.plan.sampled:
            ref = solo.get(r.plan.greedy_key)
            if ref is not None and ref.text != r.text:
                mismatches += 1
                r.error = "mismatch"
                r.detail = "request %d (%s, %s, %s): %r vs solo %r" % (
                    r.plan.index, r.plan.prompt_name, r.plan.method or "default",
                    "stream" if r.stream else "json", r.text[:80], ref.text[:80])
                count(r)

    ok = [r for r in results if not r.error]
    tokens = sum(r.completion_tokens for r in ok)
    ttft = [r.ttft_ms for r in ok if r.stream and r.ttft_ms is not None]
    per_token_client = [(r.last_text_at - r.first_text_at) * 1e3 / (r.completion_tokens - 1)
                        for r in ok if r.stream and r.first_text_at is not None and r.completion_tokens > 1]
    per_token_server = [r.timings["predicted_ms"] / (r.timings["predicted_n"] - 1)
                        for r in ok if r.timings and r.timings.get("predicted_n", 0) > 1]
    overhead = [r.wall_ms - r.timings["prompt_ms"] - r.timings["predicted_ms"] - r.timings.get("queue_ms", 0)
                for r in ok if not r.stream and r.timings]
    report = {
        "url": args.url, "model": args.model, "clients": args.clients, "requests_per_client": args.requests,
        "max_tokens": args.max_tokens, "mix_streaming": args.mix, "methods": args.methods,
        "sampled_fraction": args.sampled_fraction, "seed": args.seed,
        "requests": len(results), "ok": len(ok),
        "streaming": sum(1 for r in results if r.stream),
        "greedy": sum(1 for r in results if not r.plan.sampled),
        "errors": errors, "error_count": sum(errors.values()), "mismatches": mismatches,
        "error_samples": error_samples,
        "solo_requests": len(solo) if args.check_greedy else None,
        "solo_seconds": solo_elapsed,
        "elapsed_seconds": elapsed,
        "completion_tokens": tokens,
        "tokens_per_second": tokens / elapsed if elapsed > 0 else 0.0,
        "ttft_ms": summary(ttft),
        "per_token_ms_client": summary(per_token_client),
        "per_token_ms_server": summary(per_token_server),
        "overhead_ms": summary(overhead),
        "rss": rss,
        "by_method": {},
    }
    for m in sorted({r.plan.method for r in results}):
        mine = [r for r in ok if r.plan.method == m]
        report["by_method"][m or "default"] = {
            "ok": len(mine), "completion_tokens": sum(r.completion_tokens for r in mine),
            "prompt_ms": summary([r.timings["prompt_ms"] for r in mine if r.timings]),
            "per_token_ms_server": summary([r.timings["predicted_ms"] / (r.timings["predicted_n"] - 1)
                                            for r in mine if r.timings and r.timings.get("predicted_n", 0) > 1]),
            "overhead_ms": summary([r.wall_ms - r.timings["prompt_ms"] - r.timings["predicted_ms"] - r.timings.get("queue_ms", 0)
                                    for r in mine if not r.stream and r.timings]),
        }
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")

    def fmt(s):
        if not s["count"]:
            return "n/a"
        return "p50 %.2f p99 %.2f (n=%d)" % (s["p50"], s["p99"], s["count"])

    if not args.quiet:
        print("requests %d (ok %d, streaming %d, greedy %d) in %.2f s%s" % (
            report["requests"], report["ok"], report["streaming"], report["greedy"], elapsed,
            ", %d solo greedy runs first" % len(solo) if args.check_greedy else ""))
        print("errors   %s" % (json.dumps(errors, sort_keys=True) if errors else "none"))
        for s in error_samples:
            print("  %s" % json.dumps(s))
        print("tokens   %d completion tokens, %.1f tokens/s aggregate" % (tokens, report["tokens_per_second"]))
        print("ttft ms              %s" % fmt(report["ttft_ms"]))
        print("per-token ms client  %s" % fmt(report["per_token_ms_client"]))
        print("per-token ms server  %s" % fmt(report["per_token_ms_server"]))
        print("overhead ms          %s" % fmt(report["overhead_ms"]))
        if rss:
            print("rss MiB              start %.1f, after warm-up %.1f, end %.1f, peak %.1f (growth %+.1f, %d samples)" % (
                rss["start_mib"], rss["after_warmup_mib"], rss["end_mib"], rss["peak_mib"],
                rss["growth_after_warmup_mib"], rss["samples"]))
        for m, b in report["by_method"].items():
            print("  %-8s ok %d, per-token ms server %s, overhead ms %s" % (
                m, b["ok"], fmt(b["per_token_ms_server"]), fmt(b["overhead_ms"])))
    print("RESULT %s errors=%d mismatches=%d tokens/s=%.1f" % (
        "PASS" if not errors else "FAIL", report["error_count"], mismatches, report["tokens_per_second"]))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
