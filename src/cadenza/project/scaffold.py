"""``cadenza init``: write a ready project from a template."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from cadenza.project.config import CONFIG_NAME, PROMPT_NAME, ConfigError, ProjectSection, parse_config
from cadenza.utils.io import atomic_write_text

TEMPLATES = ("rescue-dog",)


def template_files(template: str) -> dict[str, str]:
    if template not in TEMPLATES:
        raise ConfigError(f"unknown template {template!r}; available: {', '.join(TEMPLATES)}")
    root = resources.files("cadenza.project") / "templates" / template
    return {name: (root / name).read_text(encoding="utf-8") for name in (CONFIG_NAME, PROMPT_NAME)}


def init_project(directory: Path, template: str = "rescue-dog", name: str | None = None,
                 force: bool = False) -> list[Path]:
    """Create ``directory`` (if needed) with ``cadenza.toml`` and ``SYSTEM_PROMPT.md``."""
    name = name or directory.resolve().name
    files = template_files(template)
    target = directory / CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{target}: already exists (use --force to overwrite)")
    try:  # the directory's own name may be anything (even bytes that are not UTF-8); the project's may not
        ProjectSection(name=name)
    except ValidationError as e:
        msg = e.errors()[0]["msg"]
        raise ConfigError(f"{target}: key 'project.name': {msg} (got {name[:80]!r}); "
                          "choose a name with --name") from None
    config_text = files[CONFIG_NAME].replace("{name}", name)
    parse_config(target, config_text.encode())  # the name must be valid before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    written = [target, directory / PROMPT_NAME]
    atomic_write_text(target, config_text)
    if force or not written[1].exists():
        atomic_write_text(written[1], files[PROMPT_NAME])
    return written
