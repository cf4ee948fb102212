"""``emu image ...`` sub-commands (wired into emu/cli.py via :func:`add_parser`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import build


def _parse_params(items) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items or ():
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise build.ImageError(f"--param expects KEY=VALUE, got {item!r}")
        params[k.strip()] = v.strip()
    return params


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_build(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    try:
        params = _parse_params(getattr(args, "param", None))
        out = Path(args.output) if getattr(args, "output", None) else None
        with console.status(f"building image {args.recipe}...") as status:
            def progress(msg: str) -> None:
                status.update(f"[bold]{args.recipe}[/]: {msg}")

            path = build.build_image(args.recipe, out, params,
                                     force=getattr(args, "force", False), progress=progress)
        plan = build.make_plan(args.recipe, params)
        info = build.image_summary(plan, path)
    except build.ImageError as e:
        console.print(f"[red]error:[/] {e}")
        return 1
    print(path)
    console.print(f"size {_human(info['size'])}, {info['files']} files, {info['dirs']} dirs; "
                  f"params " + " ".join(f"{k}={v}" for k, v in sorted(info["params"].items())))
    console.print("binaries: " + " ".join(sorted(info["binaries"])), soft_wrap=True)
    console.print("libraries:")
    for g, h in sorted(info["libraries"].items()):
        console.print(f"  {g}  <- {h}", soft_wrap=True)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for name in build.list_recipes():
        print(name)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``image`` (with ``build`` and ``list``) to a top-level subparsers object.

    Each leaf parser sets ``func`` to the handler (``args.func(args) -> int``).
    """
    p = subparsers.add_parser("image", help="build and inspect guest disk images")
    sub = p.add_subparsers(dest="image_cmd", required=True)
    b = sub.add_parser("build", help="build an ext2 guest image from a recipe")
    b.add_argument("recipe", nargs="?", default="base",
                   help="recipe name (default: base); see 'emu image list'")
    b.add_argument("-o", "--output", metavar="PATH",
                   help="write the image here (default: the image cache)")
    b.add_argument("--param", action="append", metavar="K=V", default=[],
                   help="override a recipe parameter, e.g. corpus_bytes=1048576")
    b.add_argument("-f", "--force", action="store_true",
                   help="rebuild even if a cached image exists")
    b.set_defaults(func=cmd_build)
    ls = sub.add_parser("list", help="list image recipes")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv=None) -> int:  # standalone: python -m images.cli build ...
    parser = argparse.ArgumentParser(prog="emu")
    add_parser(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["image", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
