"""RegionLab's Gradio app: ``python app.py [--host H] [--port N] [--share] [--device D]
[--clip NAME] [--sam NAME] ...`` (also the Hugging Face Space entry point)."""

from __future__ import annotations

import argparse
import logging
import os


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="RegionLab: region-level vision-language workbench "
                                            "(MaskInversion, ReCLIP grounding, OVSeg labelling).")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (0.0.0.0 for all; env GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")),
                   help="port (env GRADIO_SERVER_PORT)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument("--device", default=env("REGIONLAB_DEVICE"),
                   help="cpu, cuda, mps or auto (env REGIONLAB_DEVICE)")
    p.add_argument("--clip", default=env("REGIONLAB_CLIP"),
                   help="CLIP name or ARCH@SOURCE (env REGIONLAB_CLIP; default: bundled "
                        "shapes-clip; falls back to it with a notice when unavailable)")
    p.add_argument("--sam", default=env("REGIONLAB_SAM"),
                   help="segmenter model name (env REGIONLAB_SAM; default: SAM if its weights "
                        "are present, else the classical fallback)")
    p.add_argument("--captioner", default=env("REGIONLAB_CAPTIONER"), help="captioner name")
    p.add_argument("--generator", default=env("REGIONLAB_GENERATOR"), help="generator name")
    p.add_argument("--concurrency", type=int, default=int(env("REGIONLAB_CONCURRENCY", "1")),
                   help="model calls run at once (shared by all users)")
    p.add_argument("--max-file-size", default=env("REGIONLAB_MAX_FILE_SIZE", "20mb"),
                   help="largest upload accepted")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from regionlab.ui import build_app, launch_kwargs, resolve_options

    options = resolve_options(clip=args.clip, sam=args.sam, captioner=args.captioner,
                              generator=args.generator, device=args.device,
                              concurrency=args.concurrency)
    for notice in options.notices:
        logging.getLogger("regionlab").warning(notice)
    demo = build_app(options)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                max_file_size=args.max_file_size, **launch_kwargs())


if __name__ == "__main__":
    main()
