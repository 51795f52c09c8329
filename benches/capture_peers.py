"""Benchmark of repatlas capture against transformers and llama.cpp on the CPU.

Usage:
    python3 benches/capture_peers.py [--limit 128] [--repeats 3] [--quantized]
    python3 benches/capture_peers.py --scaling 250,1000,4000

The first form runs, for SmolLM2-135M-Instruct and Qwen2.5-Coder-0.5B-Instruct
over the first --limit stimuli, each peer --repeats times:

- repatlas capture with weights dequantized to f32, as a subprocess of the
  release binary, twice: with its default packed batches (stimuli end to end,
  no padding) and with right-padded batches, the layout transformers runs
  (and, with --quantized, packed with quantized matmuls);
- transformers on PyTorch, loading the same GGUF file dequantized to fp32, over
  right-padded batches planned like repatlas's (stimuli sorted by token count,
  at most --batch-tokens padded slots and --batch-rows rows per batch);
- llama.cpp through llama-cpp-python on the same GGUF file with its quantized
  weights, evaluating one stimulus at a time (prompt processing).

Each run is its own process, so its peak RSS comes from os.wait4. Tokens/s
counts real (non-padding) tokens over forward time only, so model load and
tokenization are excluded. repatlas's figure is the one its last stderr line
reports, whose time also covers pooling each batch and writing it to disk and
its first, cold batch. Each peer instead makes one untimed warm-up call on the
first stimulus before it is timed, because llama.cpp's first evaluation in a
process took seconds longer than later ones on a busy machine (0.1 to 0.2 s
on an idle one), so any bias favours the peers.
Repeats go round-robin over models and tools so that slow drifts in machine
load spread over all of them. Each run also records how many cores other
processes kept busy meanwhile (busy time from /proc/stat minus the run's own
CPU time).

The second form runs repatlas capture on SmolLM2 over growing stimulus sets
built by cycling the stimulus file with new ids, to show how peak RSS and time
grow with the number of stimuli.

The parent process needs only the standard library. The transformers and
llama.cpp workers run under --python (default .bench-venv/bin/python, which
scripts/bench-peers-setup.sh creates). Outputs go to --out-dir (default
out/bench): capture.json and capture.md, or capture_scaling.json and
capture_scaling.md. Tables are also printed to stdout.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODELS = {
    "smollm2": {
        "name": "SmolLM2-135M-Instruct",
        "gguf": ROOT / "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    "qwen": {
        "name": "Qwen2.5-Coder-0.5B-Instruct",
        "gguf": ROOT / "models/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    },
}

TOOL_LABELS = {
    "repatlas": "repatlas capture (f32, packed)",
    "repatlas-padded": "repatlas capture (f32, right-padded)",
    "repatlas-quantized": "repatlas capture (quantized, packed)",
    "transformers": "transformers (fp32)",
    "llama.cpp": "llama.cpp (GGUF quantized)",
}

# Other processes busy on fewer cores than this leave a run counted as idle.
IDLE_CORES = 0.25

CAPTURED_LINE = re.compile(
    r"captured (\d+) stimuli \((\d+) tokens, (\d+) truncated\) into .* at ([0-9.]+) tokens/s"
)


# ---------------------------------------------------------------------------
# Shared helpers


def read_stimuli(path, limit):
    """Return the first `limit` stimuli of a JSON-lines file as dicts."""
    stimuli = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            stimuli.append(json.loads(line))
            if limit is not None and len(stimuli) == limit:
                break
    if limit is not None and len(stimuli) < limit:
        raise SystemExit(f"{path} has only {len(stimuli)} stimuli, fewer than --limit {limit}")
    return stimuli


def plan_batches(lengths, max_batch_tokens, max_batch_rows):
    """Group stimulus indices into batches the way repatlas capture does.

    Stimuli are sorted by (length, index). A batch grows while its row count
    times the longest length in it stays within max_batch_tokens and it has
    fewer than max_batch_rows rows.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches, current = [], []
    for i in order:
        width = max(lengths[i], 1)
        fits = (len(current) + 1) * width <= max(max_batch_tokens, width) and len(current) < max(
            max_batch_rows, 1
        )
        if not fits and current:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def cpu_busy_seconds():
    """Return the seconds all CPUs have spent busy since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    jiffies = [int(x) for x in fields[:8]]
    idle = jiffies[3] + jiffies[4]  # idle + iowait
    return (sum(jiffies) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_idle(max_wait_s, max_busy_cores=IDLE_CORES, window_s=5.0):
    """Wait until the machine's busy cores fall below max_busy_cores.

    Gives up after max_wait_s and returns the seconds waited, so a run that
    starts on a busy machine still shows it in its other_cores figure.
    """
    started = time.perf_counter()
    while True:
        before = cpu_busy_seconds()
        time.sleep(window_s)
        busy_cores = (cpu_busy_seconds() - before) / window_s
        waited = time.perf_counter() - started
        if busy_cores < max_busy_cores or waited >= max_wait_s:
            if waited > 1.5 * window_s:
                print(f"    waited {waited:.0f} s for the machine to go idle ({busy_cores:.2f} cores busy)", file=sys.stderr)
            return waited


def run_measured(argv, env=None):
    """Run argv to completion and return its output, exit status and resource use.

    Peak RSS comes from os.wait4 on this one child, in MB (ru_maxrss is in KiB
    on Linux). other_cores is the mean number of cores that other processes
    kept busy during the run.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        busy_before = cpu_busy_seconds()
        load_before = os.getloadavg()
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        busy = cpu_busy_seconds() - busy_before
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    child_cpu = usage.ru_utime + usage.ru_stime
    return {
        "argv": [str(a) for a in argv],
        "returncode": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
        "wall_s": wall,
        "cpu_s": child_cpu,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "other_cores": max(busy - child_cpu, 0.0) / wall if wall > 0 else 0.0,
        "loadavg_1min_before": load_before[0],
    }


def tail(text, lines=15):
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON object as the
# last line of stdout.


def worker_transformers(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    gguf = Path(args.gguf)
    stimuli = read_stimuli(args.stimuli, args.limit)

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.eval()
    load_s = time.perf_counter() - started

    ids = [tokenizer(s["text"], add_special_tokens=True)["input_ids"] for s in stimuli]
    lengths = [len(x) for x in ids]
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    batches = plan_batches(lengths, args.batch_tokens, args.batch_rows)

    forward_s = 0.0
    n_hidden = None
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(input_ids=torch.tensor([ids[0]]), output_hidden_states=True, use_cache=False, logits_to_keep=1)
        warmup_s = time.perf_counter() - t0
        for rows in batches:
            width = max(lengths[r] for r in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows):
                input_ids[j, : lengths[r]] = torch.tensor(ids[r])
                mask[j, : lengths[r]] = 1
            t0 = time.perf_counter()
            # logits_to_keep=1 limits the vocabulary projection to the last
            # position, because capture needs the hidden states and not the
            # logits (repatlas computes no logits).
            out = model(
                input_ids=input_ids,
                attention_mask=mask,
                output_hidden_states=True,
                use_cache=False,
                logits_to_keep=1,
            )
            forward_s += time.perf_counter() - t0
            n_hidden = len(out.hidden_states)
            del out

    n_tokens = sum(lengths)
    print(
        json.dumps(
            {
                "tokens": n_tokens,
                "tokens_per_s": n_tokens / forward_s,
                "forward_s": forward_s,
                "load_s": load_s,
                "warmup_s": warmup_s,
                "batches": len(batches),
                "padded_slots": sum(len(rows) * max(lengths[r] for r in rows) for rows in batches),
                "hidden_states": n_hidden,
                "threads": torch.get_num_threads(),
                "add_bos": bool(ids and tokenizer.bos_token_id is not None and ids[0][0] == tokenizer.bos_token_id),
                "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
            }
        )
    )


def worker_llama(args):
    import llama_cpp
    from llama_cpp import Llama

    stimuli = read_stimuli(args.stimuli, args.limit)
    started = time.perf_counter()
    llm = Llama(
        model_path=str(args.gguf),
        n_ctx=args.n_ctx,
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    load_s = time.perf_counter() - started

    # With add_bos=True, llama.cpp adds a BOS token only where the model's
    # GGUF metadata calls for one. The add_bos field reports what it did.
    ids = [llm.tokenize(s["text"].encode("utf-8"), add_bos=True, special=False) for s in stimuli]
    longest = max(len(x) for x in ids)
    if longest > args.n_ctx:
        raise SystemExit(f"a stimulus has {longest} tokens, more than --n-ctx {args.n_ctx}")

    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids[0])
    warmup_s = time.perf_counter() - t0

    forward_s = 0.0
    for tokens in ids:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        forward_s += time.perf_counter() - t0

    n_tokens = sum(len(x) for x in ids)
    print(
        json.dumps(
            {
                "tokens": n_tokens,
                "tokens_per_s": n_tokens / forward_s,
                "forward_s": forward_s,
                "load_s": load_s,
                "warmup_s": warmup_s,
                "add_bos": bool(ids and ids[0][0] == llm.token_bos()),
                "threads": args.threads,
                "versions": {"llama_cpp_python": llama_cpp.__version__},
            }
        )
    )


# ---------------------------------------------------------------------------
# Peers as seen from the parent


def run_repatlas(args, gguf, stimuli, limit, weights, padding=None):
    work = Path(tempfile.mkdtemp(prefix="capture-peers-"))
    try:
        argv = [
            args.repatlas,
            "capture",
            "--model",
            gguf,
            "--stimuli",
            stimuli,
            "--out",
            work / "run",
            "--batch-tokens",
            str(args.batch_tokens),
            "--batch-rows",
            str(args.batch_rows),
            "--weights",
            weights,
        ]
        if limit is not None:
            argv += ["--limit", str(limit)]
        if padding is not None:
            argv += ["--padding", padding]
        result = run_measured(argv)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    match = None
    for line in reversed(result["stderr"].strip().splitlines()):
        match = CAPTURED_LINE.search(line)
        if match:
            break
    if result["returncode"] != 0 or match is None:
        result["error"] = f"repatlas capture failed (exit {result['returncode']}):\n{tail(result['stderr'])}"
        return result
    result["stimuli"] = int(match.group(1))
    result["tokens"] = int(match.group(2))
    result["tokens_per_s"] = float(match.group(4))
    # Forward seconds from repatlas's rounded tokens/s, so that wall_s minus
    # forward_s covers load, tokenization and assembly.
    result["forward_s"] = result["tokens"] / result["tokens_per_s"]
    return result


def run_worker(args, tool, gguf):
    argv = [
        args.python,
        __file__,
        "--worker",
        tool,
        "--gguf",
        gguf,
        "--stimuli",
        args.stimuli,
        "--limit",
        str(args.limit),
        "--threads",
        str(args.threads),
        "--batch-tokens",
        str(args.batch_tokens),
        "--batch-rows",
        str(args.batch_rows),
        "--n-ctx",
        str(args.n_ctx),
    ]
    # Both peers read the local GGUF file, so the Hub is never contacted.
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = run_measured(argv, env=env)
    lines = result["stdout"].strip().splitlines()
    try:
        result.update(json.loads(lines[-1]))
    except (IndexError, json.JSONDecodeError):
        result["error"] = f"{tool} worker failed (exit {result['returncode']}):\n{tail(result['stderr'])}"
    return result


# ---------------------------------------------------------------------------
# Tables


def describe_machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def summarize(runs):
    """Group successful runs by (model, tool) and compute min/median/max."""
    groups = {}
    for run in runs:
        if "error" in run:
            continue
        groups.setdefault((run["model"], run["tool"]), []).append(run)
    summary = {}
    for key, group in groups.items():
        speeds = [r["tokens_per_s"] for r in group]
        idle_speeds = [r["tokens_per_s"] for r in group if r["other_cores"] < IDLE_CORES]
        summary[key] = {
            "idle_n": len(idle_speeds),
            "idle_median": statistics.median(idle_speeds) if idle_speeds else None,
            "n": len(group),
            "tokens": sorted({r["tokens"] for r in group}),
            "min": min(speeds),
            "median": statistics.median(speeds),
            "max": max(speeds),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in group),
            "load_s": statistics.median(r["wall_s"] - r["forward_s"] for r in group),
            "warmup_s": statistics.median(r["warmup_s"] for r in group) if "warmup_s" in group[0] else None,
            "other_cores": max(r["other_cores"] for r in group),
        }
    return summary


def capture_table(report):
    summary = summarize(report["runs"])
    lines = [
        f"# Capture speed: repatlas against transformers and llama.cpp",
        "",
        f"Written by `benches/capture_peers.py` on {report['started']} UTC.",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['memory_gib']} GiB. Threads per peer: {report['settings']['threads']}.",
        f"Stimuli: first {report['settings']['limit']} of `{report['settings']['stimuli']}`, "
        f"{report['settings']['repeats']} repeats per peer, each a fresh process.",
        f"Batches (repatlas and transformers): at most {report['settings']['batch_tokens']} slots, padding included, "
        f"and {report['settings']['batch_rows']} rows. llama.cpp evaluates one stimulus at a time with n_batch 512.",
        "",
        "Tokens/s counts real tokens over forward time (load and tokenization excluded). "
        "repatlas's forward time also covers pooling and writing each batch and its cold first batch; "
        "each peer first makes one untimed warm-up call on the first stimulus. "
        "\"Outside forward\" is the median wall time of the process minus forward time (imports, load, tokenization, warm-up, writes). "
        "\"Other cores\" is the largest mean number of cores that other processes kept busy during any repeat. "
        f"Idle repeats are those where other processes kept fewer than {IDLE_CORES} cores busy.",
        "",
        "| model | weight file MB | tool | tokens | tokens/s min | median | max | idle repeats | median of idle | peak RSS MB | outside forward s | warm-up s | other cores |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model_key in report["settings"]["models"]:
        model = report["models"][model_key]
        for tool in report["settings"]["tools"]:
            s = summary.get((model_key, tool))
            if s is None:
                lines.append(f"| {model['name']} | {model['file_mb']:.0f} | {TOOL_LABELS[tool]} | failed | | | | | | | | | |")
                continue
            tokens = "/".join(str(t) for t in s["tokens"])
            warmup = "" if s["warmup_s"] is None else f"{s['warmup_s']:.1f}"
            idle_median = "" if s["idle_median"] is None else f"{s['idle_median']:.0f}"
            lines.append(
                f"| {model['name']} | {model['file_mb']:.0f} | {TOOL_LABELS[tool]} | {tokens} | "
                f"{s['min']:.0f} | {s['median']:.0f} | {s['max']:.0f} | {s['idle_n']}/{s['n']} | {idle_median} | {s['peak_rss_mb']:.0f} | "
                f"{s['load_s']:.1f} | {warmup} | {s['other_cores']:.2f} |"
            )
    lines += ["", "Ratios of median tokens/s (all repeats, and idle repeats only where both tools have one):", ""]
    lines += ["| model | ratio | all repeats | idle repeats |", "|---|---|---:|---:|"]
    for model_key in report["settings"]["models"]:
        name = report["models"][model_key]["name"]
        for ours in ("repatlas", "repatlas-padded", "repatlas-quantized"):
            for peer in ("transformers", "llama.cpp"):
                a, b = summary.get((model_key, ours)), summary.get((model_key, peer))
                if a and b:
                    idle = ""
                    if a["idle_median"] and b["idle_median"]:
                        idle = f"{a['idle_median'] / b['idle_median']:.2f}"
                    lines.append(
                        f"| {name} | {TOOL_LABELS[ours]} / {TOOL_LABELS[peer]} | {a['median'] / b['median']:.2f} | {idle} |"
                    )
    failures = [r for r in report["runs"] if "error" in r]
    if failures:
        lines += ["", "Failed runs:", ""]
        for r in failures:
            first = r["error"].splitlines()[0]
            lines.append(f"- {r['model']} {r['tool']} repeat {r['repeat']}: {first}")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(report["versions"].items()))]
    return "\n".join(lines) + "\n"


def scaling_table(report):
    lines = [
        "# repatlas capture: peak RSS and time against the number of stimuli",
        "",
        f"Written by `benches/capture_peers.py --scaling` on {report['started']} UTC.",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['memory_gib']} GiB. Model: {report['model']} (weights {report['settings']['weights']}).",
        f"Stimulus sets cycle `{report['settings']['stimuli']}` with new ids. "
        f"Batches: packed, at most {report['settings']['batch_tokens']} tokens and {report['settings']['batch_rows']} rows.",
        "",
        "| stimuli | tokens | wall s | forward s | tokens/s | peak RSS MB | other cores |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"| {r['n_stimuli']} | failed | | | | | |")
            continue
        lines.append(
            f"| {r['n_stimuli']} | {r['tokens']} | {r['wall_s']:.1f} | {r['forward_s']:.1f} | "
            f"{r['tokens_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['other_cores']:.2f} |"
        )
    lines += ["", f"repatlas {report['versions'].get('repatlas', '?')}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Modes


def freeze_repatlas(args, tmp):
    """Copy the repatlas binary into tmp and point args.repatlas at the copy.

    A rebuild during a long benchmark then cannot mix two binaries. Returns
    the version with the original's build time, to tell rebuilt binaries apart.
    """
    out = subprocess.run([args.repatlas, "--version"], capture_output=True, text=True, check=True)
    built = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.stat(args.repatlas).st_mtime))
    copy = Path(tmp) / "repatlas"
    shutil.copy2(args.repatlas, copy)
    args.repatlas = copy
    return f"{out.stdout.strip().split()[-1]} (binary built {built} UTC)"


def check_inputs(args, model_keys):
    if not os.access(args.repatlas, os.X_OK):
        raise SystemExit(f"repatlas binary not found at {args.repatlas}; run cargo build --release")
    for key in model_keys:
        if not MODELS[key]["gguf"].is_file():
            raise SystemExit(f"model file not found: {MODELS[key]['gguf']}; run scripts/fetch-models.sh")


def run_capture(args):
    model_keys = args.models.split(",")
    for key in model_keys:
        if key not in MODELS:
            raise SystemExit(f"unknown model {key!r}; choose from {', '.join(MODELS)}")
    tools = (
        ["repatlas", "repatlas-padded"]
        + (["repatlas-quantized"] if args.quantized else [])
        + ["transformers", "llama.cpp"]
    )
    check_inputs(args, model_keys)
    if not os.access(args.python, os.X_OK):
        raise SystemExit(f"Python for the peers not found at {args.python}; run scripts/bench-peers-setup.sh")

    report = {
        "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": describe_machine(),
        "settings": {
            "limit": args.limit,
            "repeats": args.repeats,
            "threads": args.threads,
            "batch_tokens": args.batch_tokens,
            "batch_rows": args.batch_rows,
            "n_ctx": args.n_ctx,
            "stimuli": os.path.relpath(args.stimuli, ROOT),
            "models": model_keys,
            "tools": tools,
        },
        "models": {
            key: {
                "name": MODELS[key]["name"],
                "gguf": os.path.relpath(MODELS[key]["gguf"], ROOT),
                "file_mb": MODELS[key]["gguf"].stat().st_size / 1e6,
            }
            for key in model_keys
        },
        "versions": {},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="capture-peers-") as tmp:
        report["versions"]["repatlas"] = freeze_repatlas(args, tmp)
        measure_peers(args, report, model_keys, tools)
    print(write_capture_outputs(args, report))


def write_capture_outputs(args, report):
    """Write capture.json and capture.md into args.out_dir and return the table."""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "capture.json").write_text(json.dumps(report, indent=2) + "\n")
    table = capture_table(report)
    (args.out_dir / "capture.md").write_text(table)
    return table


def measure_peers(args, report, model_keys, tools):
    """Run every tool on every model, round-robin, and append to report["runs"]."""
    for repeat in range(args.repeats):
        for key in model_keys:
            gguf = MODELS[key]["gguf"]
            for tool in tools:
                print(f"[{time.strftime('%H:%M:%S')}] repeat {repeat + 1}/{args.repeats} {key} {tool}", file=sys.stderr, flush=True)
                idle_wait_s = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else 0.0
                if tool == "repatlas":
                    result = run_repatlas(args, gguf, args.stimuli, args.limit, "dequantize")
                elif tool == "repatlas-padded":
                    result = run_repatlas(args, gguf, args.stimuli, args.limit, "dequantize", "right")
                elif tool == "repatlas-quantized":
                    result = run_repatlas(args, gguf, args.stimuli, args.limit, "quantized")
                else:
                    result = run_worker(args, tool, gguf)
                result.update(model=key, tool=tool, repeat=repeat, idle_wait_s=idle_wait_s)
                if "error" in result:
                    print(result["error"], file=sys.stderr)
                else:
                    print(
                        f"    {result['tokens']} tokens, {result['tokens_per_s']:.0f} tokens/s, "
                        f"peak RSS {result['peak_rss_mb']:.0f} MB, other cores {result['other_cores']:.2f}",
                        file=sys.stderr,
                    )
                    report["versions"].update(result.get("versions", {}))
                # The JSON keeps a run's full output only when the run failed.
                if "error" not in result:
                    result.pop("stdout")
                    result.pop("stderr")
                report["runs"].append(result)
                # Rewritten after every run so that an interrupted benchmark keeps its results.
                write_capture_outputs(args, report)


def cycled_stimuli(source, n, path):
    """Write n stimuli to path by cycling source, with ids made unique per cycle."""
    base = read_stimuli(source, None)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            s = dict(base[i % len(base)])
            s["id"] = f"{s['id']}-c{i // len(base)}"
            f.write(json.dumps(s) + "\n")


def run_scaling(args):
    counts = [int(x) for x in args.scaling.split(",")]
    key = "smollm2"
    check_inputs(args, [key])
    report = {
        "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": describe_machine(),
        "model": MODELS[key]["name"],
        "settings": {
            "counts": counts,
            "weights": "dequantize",
            "batch_tokens": args.batch_tokens,
            "batch_rows": args.batch_rows,
            "stimuli": os.path.relpath(args.stimuli, ROOT),
        },
        "versions": {},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="capture-scaling-") as tmp:
        report["versions"]["repatlas"] = freeze_repatlas(args, tmp)
        for n in counts:
            path = Path(tmp) / f"stimuli-{n}.jsonl"
            cycled_stimuli(args.stimuli, n, path)
            print(f"[{time.strftime('%H:%M:%S')}] scaling {n} stimuli", file=sys.stderr, flush=True)
            if args.wait_idle > 0:
                wait_for_idle(args.wait_idle)
            result = run_repatlas(args, MODELS[key]["gguf"], path, None, "dequantize")
            result["n_stimuli"] = n
            if "error" in result:
                print(result["error"], file=sys.stderr)
            else:
                print(
                    f"    {result['tokens']} tokens, {result['wall_s']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB",
                    file=sys.stderr,
                )
                result.pop("stdout")
                result.pop("stderr")
            report["runs"].append(result)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "capture_scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    table = scaling_table(report)
    (args.out_dir / "capture_scaling.md").write_text(table)
    print(table)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=128, help="number of stimuli from the start of --stimuli (default 128)")
    p.add_argument("--repeats", type=int, default=3, help="runs per peer and model (default 3)")
    p.add_argument("--models", default="smollm2,qwen", help=f"comma-separated subset of {','.join(MODELS)}")
    p.add_argument("--quantized", action="store_true", help="also run repatlas capture --weights quantized")
    p.add_argument("--render", type=Path, metavar="JSON", help="rewrite the table of an earlier capture JSON (same name, .md) and exit")
    p.add_argument("--scaling", metavar="N,N,...", help="run the scaling mode over these stimulus counts instead")
    p.add_argument("--threads", type=int, default=2, help="threads for torch and llama.cpp (default 2)")
    p.add_argument("--batch-tokens", type=int, default=2048, help="token slots per batch, padding included (default 2048, as repatlas)")
    p.add_argument("--batch-rows", type=int, default=64, help="maximum stimuli per batch (default 64, as repatlas)")
    p.add_argument("--n-ctx", type=int, default=2048, help="llama.cpp context size in tokens (default 2048)")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes to use under 0.25 cores (default 0: no wait)",
    )
    p.add_argument("--stimuli", type=Path, default=ROOT / "datasets/stimuli.jsonl")
    p.add_argument("--repatlas", type=Path, default=ROOT / "target/release/repatlas")
    p.add_argument("--python", type=Path, default=ROOT / ".bench-venv/bin/python", help="interpreter for the peers")
    p.add_argument("--out-dir", type=Path, default=ROOT / "out/bench")
    # Internal: run one peer in this process.
    p.add_argument("--worker", choices=["transformers", "llama.cpp"], help=argparse.SUPPRESS)
    p.add_argument("--gguf", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.limit < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--limit, --repeats and --threads must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker == "transformers":
        worker_transformers(args)
    elif args.worker == "llama.cpp":
        worker_llama(args)
    elif args.render:
        report = json.loads(args.render.read_text())
        table = capture_table(report)
        args.render.with_suffix(".md").write_text(table)
        print(table)
    elif args.scaling:
        run_scaling(args)
    else:
        run_capture(args)


if __name__ == "__main__":
    main()
