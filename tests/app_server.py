"""Start the app in-process on 127.0.0.1 for tests and scripts (not a test module)."""

from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def running_app(attempts: int = 3):
    """The app with the bundled models on a free 127.0.0.1 port; yields the Blocks.

    Gradio's launch probes the page once with a 3 s timeout; on a loaded 2-core machine the
    first page render can take longer, so the launch is retried (the page is warm by then).
    """
    import torch

    from regionlab.ui import build_app, launch_kwargs, resolve_options

    torch.set_num_threads(2)
    demo = build_app(resolve_options(device="cpu"))
    for attempt in range(attempts):
        try:
            demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                        **launch_kwargs())
            break
        except ValueError as exc:
            demo.close()
            if "localhost is not accessible" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(2)
    try:
        yield demo
    finally:
        demo.close()
