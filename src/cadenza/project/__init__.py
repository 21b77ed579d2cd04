"""Project directories: the validated ``cadenza.toml``, scaffold templates and paths."""

from cadenza.project.config import ConfigError, Project, ProjectConfig, load_project

__all__ = ["ConfigError", "Project", "ProjectConfig", "load_project"]
