"""MkDocs hook: links from docs/ pages to files elsewhere in the repository.

The pages link to benchmark results, configs and figures outside docs/ with relative paths, which
work where the repository is browsed (GitHub) but are not part of the site. This hook checks that
every such target exists (a missing one is a warning, so `mkdocs build --strict` fails), copies
the images among them into the site under repo/, and turns the other links into their path in
code (or into a link to `repo_url`'s file view where mkdocs.yml sets `repo_url`).
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.repo_links")

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
SITE_FOLDER = "repo"


def _outside(target: str, page_file: Path, docs: Path, repo: Path) -> Path | None:
    """The repository file a relative link points at, when it lies outside docs/."""
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return None
    path = (page_file.parent / target.split("#")[0]).resolve()
    if path == docs or docs in path.parents:
        return None
    return path


def _roots(config) -> tuple[Path, Path]:
    docs = Path(config.docs_dir).resolve()
    return docs, Path(config.config_file_path).resolve().parent


def _prose(markdown: str) -> list[tuple[bool, str]]:
    """The markdown cut into (is_code_fence, text) pieces."""
    pieces, last = [], 0
    for match in FENCE.finditer(markdown):
        pieces += [(False, markdown[last:match.start()]), (True, match.group(0))]
        last = match.end()
    return [*pieces, (False, markdown[last:])]


def on_files(files, config):
    docs, repo = _roots(config)
    added: set[str] = set()
    for page in files.documentation_pages():
        page_file = Path(page.abs_src_path)
        for is_code, text in _prose(page_file.read_text(encoding="utf-8")):
            if is_code:
                continue
            for bang, _, target in LINK.findall(text):
                path = _outside(target, page_file, docs, repo)
                if bang and path is not None and path.is_file() and repo in path.parents:
                    uri = f"{SITE_FOLDER}/{path.relative_to(repo).as_posix()}"
                    if uri not in added:
                        added.add(uri)
                        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    docs, repo = _roots(config)
    page_file = Path(page.file.abs_src_path)
    page_dir = posixpath.dirname(page.file.src_uri)

    def replace(match: re.Match) -> str:
        bang, text, target = match.groups()
        path = _outside(target, page_file, docs, repo)
        if path is None:
            return match.group(0)
        if not path.exists() or repo not in path.parents:
            log.warning("Doc file '%s' links to '%s', which is not a file of this repository",
                        page.file.src_uri, target)
            return match.group(0)
        rel = path.relative_to(repo).as_posix() + ("/" if path.is_dir() else "")
        if bang:
            return f"![{text}]({posixpath.relpath(f'{SITE_FOLDER}/{rel}', page_dir or '.')})"
        if config.repo_url:
            kind = "tree" if path.is_dir() else "blob"
            return f"[{text}]({config.repo_url.rstrip('/')}/{kind}/main/{rel})"
        plain = text.strip("`")
        return f"`{rel}`" if plain in (rel, rel.rstrip("/")) else f"{text} (`{rel}`)"

    return "".join(code if is_code else LINK.sub(replace, code) for is_code, code in _prose(markdown))
