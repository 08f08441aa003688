"""Speed and memory of gpt-oss-20b's shape through the appliance's own model layer.

The real weights cannot be on our machines, but the work per token does not depend on the
weights' values: a random-weight file of the same dimensions, vocabulary size and tensor
types (tests/support/tiny_gpt_oss.py, ``GPT_OSS_20B``) costs what the real model costs.
This measures it where the appliance's worker would run it: ``LocalModel`` with the
harmony format, the appliance's own system text and rules, a prompt of about the size the
context packer fills, and in the same process the bare llama-cpp-python token loop on the
same tokens. It needs llama-cpp-python, gguf, numpy and Django importable; no database.

    python -m tests.support.gpt_oss_shape_bench build /tmp/gpt-oss-20b-shape.gguf
    python -m tests.support.gpt_oss_shape_bench run /tmp/gpt-oss-20b-shape.gguf \\
        [--threads N] [--gpu-layers -1] [--json]

With ``--json`` the last line is one JSON object. The answers are noise.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROMPTS = Path(__file__).resolve().parents[2] / "inference" / "prompts.py"

SOURCE = (
    "[{n}] {title}, page {n}: Employees accrue 25 days of paid vacation per "
    "calendar year. Requests are made in the HR portal at least four weeks ahead, and the "
    "manager answers within five working days. Unused days may be carried over, up to ten.\n"
)


def _prompt_constants() -> tuple[str, str]:
    """SYSTEM and INSTRUCTIONS from inference/prompts.py, read without importing it
    (importing it needs the database-backed retrieval module)."""
    values: dict[str, str] = {}
    for node in ast.parse(PROMPTS.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("SYSTEM", "INSTRUCTIONS"):
                values[name] = ast.literal_eval(node.value)
    return values["SYSTEM"], values["INSTRUCTIONS"]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _gpu_memory_mb() -> int | None:
    """GPU memory in use (all processes), when an NVIDIA GPU is there to ask."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out.split()[0]) if out.strip() else None


def _ours(model: Any, prompt: str, max_tokens: int) -> dict[str, float]:
    from inference.llm.base import GenerationStats

    stats = GenerationStats()
    reader = model.format.reader()
    for text in model.stream(
        prompt, max_tokens=max_tokens, temperature=1.0, top_p=1.0, stats=stats
    ):
        reader.feed(text)  # as the worker does: reasoning and answer split as they come
    reader.close()
    ttft = stats.first_token_s or stats.total_s
    decode = stats.total_s - ttft
    return {
        "ttft_ms": ttft * 1000,
        "tokens": stats.completion_tokens,
        "tokens_per_s": (stats.completion_tokens - 1) / decode if decode > 0 else 0.0,
        "prompt_tokens": stats.prompt_tokens,
        "reused": stats.reused_prefix_tokens,
    }


def _bare(llama: Any, tokens: list[int], max_tokens: int) -> dict[str, float]:
    """llama-cpp-python's own loop, same sampling, no text handling: the floor."""
    llama.reset()
    started = time.perf_counter()
    first = None
    produced = 0
    for _ in llama.generate(tokens, temp=1.0, top_p=1.0, top_k=0, min_p=0.0, reset=True):
        produced += 1
        if first is None:
            first = time.perf_counter()
        if produced >= max_tokens:
            break
    done = time.perf_counter()
    first = first or done
    return {
        "ttft_ms": (first - started) * 1000,
        "tokens": produced,
        "tokens_per_s": (produced - 1) / (done - first) if done > first else 0.0,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    if not settings.configured:
        settings.configure(LLM_REASONING_EFFORT="low", LLM_REPEAT_PENALTY=1.0)
    import llama_cpp

    from inference.llm.backend import LocalModel

    rss_before = _rss_mb()
    started = time.perf_counter()
    model = LocalModel(
        args.model,
        chat_format="harmony",
        context=args.context,
        threads=args.threads,
        gpu_layers=args.gpu_layers,
        seed=1,
    )
    load_s = time.perf_counter() - started
    system, instructions = _prompt_constants()

    def prompt(title: str, question: str) -> str:
        """A harmony prompt of at least ``--prompt-tokens``, sources added until it is."""
        sources = ""
        while True:
            user = f"Sources:\n{sources}\nQuestion: {question}"
            text = model.format.render(system, instructions, user, [])
            if model.count_tokens(text) >= args.prompt_tokens:
                return text
            sources += SOURCE.format(n=sources.count("\n") + 1, title=title)

    cold_prompt = prompt("Personnel handbook", "How many vacation days do employees get?")
    # Another person's question on other sources: only the system text and rules are shared.
    other_prompt = prompt("Travel policy", "Hvor mange feriedager kan overføres?")
    cold_tokens = model.llama.tokenize(cold_prompt.encode("utf-8"), add_bos=True, special=True)

    # The first call sets up buffers: outside the timings, and short.
    _ours(model, model.format.render(system, instructions, "Hello?", []), 4)
    cold, shared, bare = [], [], []
    for _ in range(args.repeats):
        model.llama.reset()
        cold.append(_ours(model, cold_prompt, args.decode_tokens))
        shared.append(_ours(model, other_prompt, args.decode_tokens))
        bare.append(_bare(model.llama, cold_tokens, args.decode_tokens))

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    ours_rate = median(cold + shared, "tokens_per_s")
    bare_rate = median(bare, "tokens_per_s")
    result = {
        "model": Path(args.model).name,
        "file_gb": round(Path(args.model).stat().st_size / 1e9, 2),
        "threads": args.threads,
        "gpu_layers": args.gpu_layers,
        "llama_cpp_python": llama_cpp.__version__,
        "load_s": round(load_s, 1),
        "rss_mb_after_run": round(_rss_mb() - rss_before),
        "gpu_memory_used_mb": _gpu_memory_mb() if args.gpu_layers else None,
        "prompt_tokens": cold[0]["prompt_tokens"],
        "decode_tokens": args.decode_tokens,
        "completion_tokens_min": min(row["tokens"] for row in cold + shared),
        "ttft_cold_ms": round(median(cold, "ttft_ms")),
        "prompt_tokens_per_s": round(cold[0]["prompt_tokens"] / median(cold, "ttft_ms") * 1000),
        "shared_prefix_tokens": shared[0]["reused"],
        "ttft_shared_prefix_ms": round(median(shared, "ttft_ms")),
        "prefix_ttft_speedup": round(median(cold, "ttft_ms") / median(shared, "ttft_ms"), 2),
        "tokens_per_s": round(ours_rate, 2),
        "bare_ttft_ms": round(median(bare, "ttft_ms")),
        "bare_tokens_per_s": round(bare_rate, 2),
        "tokens_per_s_ratio": round(ours_rate / bare_rate, 3) if bare_rate else None,
        "repeats": args.repeats,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the random-weight gpt-oss-20b-shaped GGUF")
    build.add_argument("path", type=Path)
    build.add_argument("--layers", type=int, help="fewer layers, for a quick check")
    measure = commands.add_parser("run", help="measure it through LocalModel and bare")
    measure.add_argument("model", type=Path)
    measure.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    measure.add_argument("--gpu-layers", type=int, default=0)
    measure.add_argument("--context", type=int, default=8192)
    measure.add_argument("--prompt-tokens", type=int, default=1500)
    measure.add_argument("--decode-tokens", type=int, default=64)
    measure.add_argument("--repeats", type=int, default=2)
    measure.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "build":
        from tests.support.tiny_gpt_oss import GPT_OSS_20B, build_gpt_oss_gguf

        started = time.perf_counter()
        build_gpt_oss_gguf(args.path, GPT_OSS_20B, layers=args.layers)
        size = args.path.stat().st_size / 1e9
        print(f"wrote {args.path} ({size:.2f} GB) in {time.perf_counter() - started:.0f} s")
        return 0

    result = run(args)
    for key, value in result.items():
        if key != "system_info":
            print(f"{key:>24}  {value}")
    print(f"{'system_info':>24}  {result['system_info']}")
    if args.json:
        print(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
