"""Build hook of the documentation site (mkdocs.yml `hooks:`): keep the notebook pages offline.

nbconvert's page template carries a script that imports mermaid from cdnjs.cloudflare.com when a notebook
holds a mermaid diagram. Ours hold none, and the site loads nothing from the network: the script is taken out.
"""

from __future__ import annotations

import re

MERMAID = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>", re.DOTALL)


def on_post_page(output: str, page, config) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        output = MERMAID.sub("", output)
    return output
