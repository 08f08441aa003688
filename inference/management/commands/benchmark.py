"""``python manage.py benchmark <kind> ...``: figures for the speed and quality goals.

Each kind lives in its own module with ``add_arguments(parser)`` and ``run(options, out)``;
with ``--json`` the last line printed is one JSON object.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

KINDS = {
    "ingest": ("ingest.benchmark", "ingestion throughput against the bare embedding model"),
    "retrieval": (
        "inference.benchmarks.retrieval",
        "retrieval quality (BEIR) or latency (synthetic)",
    ),
    "answer": (
        "inference.benchmarks.answer",
        "answer latency through the whole appliance vs bare llama.cpp",
    ),
    "scale": (
        "inference.benchmarks.scale",
        "answers and documents per minute with one worker host, then two",
    ),
}


class Command(BaseCommand):
    help = "Measure the appliance: " + "; ".join(f"{k}: {v[1]}" for k, v in KINDS.items())

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="kind", required=True)
        for kind, (module, text) in KINDS.items():
            child = sub.add_parser(kind, help=text)
            child.add_argument("--json", action="store_true", help="end with one JSON line")
            try:
                importlib.import_module(module).add_arguments(child)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise

    def handle(self, *args: Any, **options: Any) -> None:
        module = importlib.import_module(KINDS[options["kind"]][0])
        module.run(options, self.stdout)
