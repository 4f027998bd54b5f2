"""The barcode guard's option, shared by ``kiosk convert`` and ``kiosk acquire``."""

from __future__ import annotations

import argparse
from typing import Any


def add_barcode_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ignore-barcode-mismatch", action="store_true",
                        help="store pages whose barcode names another patient or order ([barcodes] in the "
                             "config) instead of refusing them (recorded in the audit trail)")


def barcode_guard(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    """The ``Station.stream`` arguments of the guard: the ``[barcodes]`` rules and the override."""
    return {"barcodes": config.barcodes if config is not None else None,
            "ignore_barcode_mismatch": args.ignore_barcode_mismatch}
