"""``restore serve``: the local web page (see :mod:`restorekit.serve`)."""

from __future__ import annotations

from pathlib import Path

import typer

from restorekit.cli.common import EXIT_USAGE, err_console, fail, handle_errors


def register(app: typer.Typer) -> None:
    """Add ``restore serve`` to *app*."""
    app.command("serve")(serve)


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Other than 127.0.0.1: reachable by others."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free port)."),
    workdir: Path | None = typer.Option(  # noqa: UP007 - typer needs Optional on 3.11
        None,
        "--workdir",
        help="Folder for uploads and results (kept). Default: a temporary one, removed at exit.",
        show_default=False,
    ),
    max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", min=0.001, help="Largest image upload (MB)."),
    max_weights_mb: float = typer.Option(2000.0, "--max-weights-mb", min=0.001, help="Largest weight upload (MB)."),
    max_files: int = typer.Option(100, "--max-files", min=1, help="Most images in one request."),
    max_pixels: int = typer.Option(
        25_000_000, "--max-pixels", min=1, help="Largest image (width × height) accepted; a decompression-bomb guard."
    ),
    device: str | None = typer.Option(  # noqa: UP007
        None, "--device", help="cpu, cuda, cuda:1, ... Default: CUDA when available.", show_default=False
    ),
) -> None:
    """Open a local web page: drop images, pick a model, compare before/after, download.

    One worker restores one image at a time with the same code as 'restore apply', so a downloaded
    result equals 'restore apply' with the same options. It listens on 127.0.0.1 only, unless --host
    says otherwise; Ctrl-C stops it.

    Examples:

      restore serve

      restore serve --port 8080 --workdir ~/restored
    """
    try:
        import uvicorn

        from restorekit.serve.app import ServeSettings, create_app
    except ImportError as exc:
        fail(f'restore serve needs the web extra ({exc.name} is missing): pip install "restorekit[serve]"')
    if device is not None:
        from restorekit.inference.options import InferenceOptions, InferenceOptionsError

        try:
            InferenceOptions(device=device)
        except InferenceOptionsError as exc:
            fail(str(exc), EXIT_USAGE)
    if workdir is not None:
        workdir = workdir.expanduser()
        if workdir.exists() and not workdir.is_dir():
            fail(f"{workdir}: exists and is not a folder", EXIT_USAGE)
    settings = ServeSettings(
        workdir=workdir,
        host=host,
        max_upload_mb=max_upload_mb,
        max_weights_mb=max_weights_mb,
        max_files=max_files,
        max_pixels=max_pixels,
        device=device,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can use the page "
            "(there is no login)",
            soft_wrap=True,
        )
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    original = server.startup

    async def startup(sockets: list | None = None) -> None:
        await original(sockets)
        bound = [s.getsockname() for srv in server.servers for s in srv.sockets]
        for address in bound[:1]:
            shown = f"[{address[0]}]" if ":" in address[0] else address[0]
            # One line a test or a script can read the port from (with --port 0).
            err_console.print(f"restorekit serving on http://{shown}:{address[1]}/ (Ctrl-C stops)", soft_wrap=True)

    server.startup = startup  # type: ignore[method-assign]
    import socket

    try:  # bound here, so that a busy port is one line, not uvicorn's log and exit code 3
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        fail(f"{host}:{port}: cannot listen there ({exc.strerror or exc}); choose another --port or --host")
    with sock:
        server.run(sockets=[sock])
