"""The `vlzoo` command: list and inspect models, download their weights."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vlzoo.core.errors import VlzooError


def _cmd_list(args: argparse.Namespace) -> int:
    from vlzoo.core.registry import list_models

    names = list_models(args.pattern, pretrained=args.pretrained)
    print("\n".join(names) if names else f"no model matches {args.pattern!r}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from vlzoo.core.registry import model_info

    print(json.dumps(model_info(args.name), indent=2, default=str))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from vlzoo.core.registry import get_pretrained_spec, model_entry, split_model_name
    from vlzoo.core.weights.hub import download

    name, tag = split_model_name(args.name)
    entry = model_entry(name)
    tag = tag or entry.default_tag or next(iter(entry.pretrained), None)
    if tag is None:
        raise VlzooError(f"model {name!r} has no pretrained weights to download")
    cache = Path(args.cache_dir) if args.cache_dir else None
    path = download(get_pretrained_spec(name, tag), cache_dir=cache, progress=not args.quiet)
    print(path)
    return 0


def build_parser(prog: str = "vlzoo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="vlzoo: domain vision-language models")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models (or their pretrained tags)")
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'clip-*'")
    p.add_argument("--pretrained", action="store_true", help="list name:tag for every pretrained weight")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="config, parameter count and pretrained tags of a model")
    p.add_argument("name")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("download", help="download (and verify) a model's pretrained weights into the cache")
    p.add_argument("name", help="NAME or NAME:TAG")
    p.add_argument("--cache-dir", default=None, help="cache directory (default $VLZOO_HOME/weights)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_download)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "vlzoo") -> int:
    args = build_parser(prog).parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except VlzooError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
