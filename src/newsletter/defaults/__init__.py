"""What a new newsletter folder starts from, shipped inside the package.

``templates/`` (the email and web archive templates), ``topics.yaml`` (the
blog's taxonomy) and ``env.example`` (every setting). In the repository they
are links to the sample folder's own files, so there is one copy of each;
an installed package holds real copies. A newsletter folder without its own
``templates/`` (or missing one template) renders with these, so an upgrade
brings fixed templates to authors who never customised them.

Imports nothing: the bottom layer.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
TOPICS = HERE / "topics.yaml"
ENV_EXAMPLE = HERE / "env.example"
