"""``newsletter preview``: an issue's variants in a local web page that follows the author's edits.

    PreviewServer (http.server on 127.0.0.1) ──▶ Preview.respond(target) ──▶ Snapshot ──▶ Renderer
    watch thread (watchfiles: issues/, templates/) ──▶ Preview.changed(): version + 1

Routes:
    /                       the variants with their sizes, and ``check``'s problems
    /?topics=a,b            the variant a reader with those topics gets (a redirect), or why none
    /variant/<key>          the email at phone (375 px) and desktop (800 px) width, and its text part
    /raw/<key>.html|.txt    one variant filled for a sample reader: what the frames load
    /site/<path>            the archive built by ``newsletter archive`` into site/, nothing outside it
    /__version              changes whenever a watched file does

Live reload: a change bumps the version; the preview pages poll ``/__version`` and reload when
it differs from the version they were built at, and that request reads the files afresh. The
email HTML is served exactly as rendered: the script lives only in the pages around it. A
broken file shows its problems (path:line: message) in the page, and the server keeps running.

Modules:
    snapshot   the folder as read at one version: problems, issue, variants, who gets which
    app        Preview: the version, the file watcher, and the response to each address
    pages      the HTML pages, from the Jinja templates in ``templates/`` (shipped in the package)
    server     http.server around Preview.respond: PreviewServer, running(), serve()
"""

from newsletter.web.preview.app import Preview, Response
from newsletter.web.preview.server import DEFAULT_PORT, HOST, PreviewServer, running, serve
from newsletter.web.preview.snapshot import Snapshot

__all__ = ["DEFAULT_PORT", "HOST", "Preview", "PreviewServer", "Response", "Snapshot", "running", "serve"]
