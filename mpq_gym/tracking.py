"""Optional MLflow tracking (``--mlflow [URI]``): parameters, per-step metrics and artifacts of a run.

With no URI the store is a local SQLite file, ``runs/mlflow.db``, with artifacts beside it in
``runs/mlartifacts`` (browse with ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``);
a ``.db`` path means that SQLite file; anything else (``http://host:5000``, ``databricks``, ...) is
used as the tracking server URI. TensorBoard logging is unaffected and stays on by default.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from mpq_gym.errors import ConfigError

DEFAULT_STORE = Path("runs") / "mlflow.db"
MAX_PARAM_CHARS = 500


def resolve_uri(uri: str | None) -> tuple[str, str | None]:
    """(tracking URI, artifact location for new experiments: a folder beside a local store, else None)."""
    if not uri or uri.endswith(".db"):
        path = Path(uri or DEFAULT_STORE).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}", (path.parent / "mlartifacts").as_uri()
    return uri, None


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[name] = text[:MAX_PARAM_CHARS]
    return out


class MlflowTracker:
    """One MLflow run: ``with MlflowTracker(uri, experiment, run_name, params) as t: t.log_metrics(...)``."""

    def __init__(self, uri: str | None, experiment: str, run_name: str, params: Mapping[str, Any]) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise ConfigError("--mlflow needs MLflow: pip install 'mpq-gym[tracking]' "
                              "(mlflow-skinny, sqlalchemy, alembic)") from exc
        self.mlflow = mlflow
        self.uri, artifacts = resolve_uri(uri)
        self.experiment, self.run_name, self.params = experiment, run_name, dict(params)
        self._artifacts = artifacts
        self.run_id: str | None = None

    def __enter__(self) -> "MlflowTracker":
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.uri)
        client = mlflow.tracking.MlflowClient()
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(
            self.experiment, artifact_location=self._artifacts)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=self.run_name)
        self.run_id = run.info.run_id
        mlflow.log_params(_flatten(self.params))
        return self

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Numeric metrics at ``step`` (non-numbers are skipped)."""
        clean = {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path) -> None:
        """Copy a file into the run's artifacts (skipped when it does not exist)."""
        if Path(path).exists():
            self.mlflow.log_artifact(str(path))

    def __exit__(self, exc_type, exc, tb) -> None:
        self.mlflow.end_run(status="FAILED" if exc_type else "FINISHED")
