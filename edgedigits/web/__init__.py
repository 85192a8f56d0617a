"""The web page (draw, photo, camera) served by ``infer/serve.py`` at ``/``.

The page itself lives in ``static/`` (plain HTML/CSS/JavaScript, no build step, nothing from a
CDN); it talks to the server's own Open Inference Protocol v2 endpoints. The model and tensor
names it uses come from the server (``/page-config.json``, :func:`mount_page`'s ``config``), so
this package holds no Python logic besides mounting the folder.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"


CONFIG_PATH = "/page-config.json"


def mount_page(app, config: dict | None = None) -> None:
    """Serve ``static/`` on a FastAPI/Starlette ``app``: ``index.html`` at ``/``, files below,
    and ``config`` (the served models' and tensors' names) at CONFIG_PATH.

    Call it after the server's own routes are registered: ``/`` is taken over from KServe's
    liveness route (``/v2/health/live`` stays), and the static files are the last fallback, so
    they never shadow ``/v2/...``.
    """
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Route
    from starlette.staticfiles import StaticFiles

    index = STATIC_DIR / "index.html"

    async def page(request):
        return FileResponse(index, media_type="text/html")

    async def page_config(request):
        return JSONResponse(config or {})

    app.router.routes.insert(0, Route("/", page, methods=["GET", "HEAD"], name="page"))
    app.router.routes.insert(0, Route(CONFIG_PATH, page_config, methods=["GET"],
                                      name="page-config"))
    app.mount("/", StaticFiles(directory=STATIC_DIR), name="static")
