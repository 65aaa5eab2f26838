"""The built archive (``site/``), served at the same base URL as the readers' pages.

Starlette's ``StaticFiles`` finds the file (``index.html`` for a folder, and
no path outside the folder); an HTML page is answered with a policy allowing
exactly its own inline style and script (``guard.csp_for``). Before the first
``newsletter archive`` there is no site: the home page then says so and
invites visitors to subscribe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from newsletter.web.readers.guard import csp_for

if TYPE_CHECKING:
    from newsletter.web.readers.pages import Pages

# Archive pages change only when `newsletter archive` runs; a few minutes of caching is harmless.
ARCHIVE_CACHE = "public, max-age=300"


class ArchiveFiles(StaticFiles):
    def __init__(self, folder: Path, pages: Pages) -> None:
        super().__init__(directory=folder, html=True, check_dir=False)
        self.folder = folder
        self.pages = pages

    async def check_config(self) -> None:
        pass  # no site yet is a page of its own (below), not an error

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not self.folder.is_dir():
            if path.strip("/.") == "":
                return self.pages.message(
                    "",
                    self.pages.ws.settings.name,
                    "The archive is not published yet.",
                    links=[(f"{self.pages.ws.settings.base_url}/subscribe/", "Subscribe")],
                )
            return self.pages.message("", "Not found", "There is no page at this address.", code=404)
        response = await super().get_response(path, scope)
        if isinstance(response, FileResponse) and str(response.media_type or "").startswith("text/html"):
            page = Path(os.fspath(response.path)).read_text(encoding="utf-8")
            return HTMLResponse(
                page,
                status_code=response.status_code,
                headers={"Content-Security-Policy": csp_for(page), "Cache-Control": ARCHIVE_CACHE},
            )
        response.headers.setdefault("Cache-Control", ARCHIVE_CACHE)
        return response
