"""``restore serve``: a local web page over the same Python API the CLI uses.

The page (``static/``: one HTML file, plain JavaScript and CSS, no build step, nothing fetched from the
internet) lets a user drop several images, choose a model (stored, from the catalogue, or an uploaded
``.safetensors``/``.pth``), set tile, precision, output scale and format, watch each image's progress,
compare input and result with a before/after slider (fit to the window, or 1:1) and download one result
or all of them as a zip.

* :mod:`restorekit.serve.jobs`: one background worker and a queue. Images are restored one at a time
  with :func:`restorekit.load_model` / :meth:`RestorationModel.restore_picture` and written with
  :func:`restorekit.data.images.write_picture`, exactly as ``restore apply`` does, so a downloaded file
  equals ``restore apply``'s output bit for bit (tested in a real browser).
* :mod:`restorekit.serve.app`: the FastAPI application (routes, limits, the safety checks).

Safe by default: it binds to 127.0.0.1; uploads have a size limit and images a pixel limit (decompression
bombs), each refused with a message on the page; every file the server reads or writes is one it named
itself under its own folder (names in requests are never paths); uploaded weights are read through
:func:`restorekit.inference.model.load_any` (safetensors, or ``torch.load(weights_only=True)``); requests
that change state need a header a cross-site form cannot send, and only local host names are answered.

Example:
    >>> from restorekit.serve.app import ServeSettings, create_app  # doctest: +SKIP
    >>> app = create_app(ServeSettings())  # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations
