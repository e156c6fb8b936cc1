"""Serving forms: a skops version loads at serve time without skops, from bytes checked like the
artifact's, through the same restricted unpickler as uploads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from factories import fit_iris, iris_instance, register_iris
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from modelserve.config import Settings
from modelserve.core.db import Database
from modelserve.registry.loaders import load_artifact, serving_form
from modelserve.registry.models import ModelArtifact, ServingForm


@pytest.mark.parametrize(("fmt", "stored"), [("skops", True), ("joblib", False), ("pickle", False)])
def test_only_skops_versions_get_one(
    client: TestClient, db: Database, fmt: str, stored: bool
) -> None:
    register_iris(client, fmt=fmt)
    with db.transaction() as session:
        forms = session.scalars(select(ServingForm)).all()
        assert (len(forms) == 1) is stored


def test_it_loads_back_as_the_same_model() -> None:
    estimator = fit_iris()
    content = serving_form(estimator)
    assert content is not None
    loaded = load_artifact(content, "joblib").estimator
    rows = [list(iris_instance(i).values()) for i in range(0, 150, 7)]
    assert (loaded.predict_proba(rows) == estimator.predict_proba(rows)).all()


def test_an_object_the_unpickler_refuses_gets_none() -> None:
    from sklearn.preprocessing import FunctionTransformer

    # A function reference is exactly what the restricted unpickler refuses.
    assert serving_form(FunctionTransformer(func=len)) is None


def test_a_tampered_serving_form_is_refused(client: TestClient, db: Database) -> None:
    register_iris(client)
    with db.transaction() as session:
        # The artifact stays intact: the form is what the server loads, and it is checked too.
        assert session.scalars(select(ModelArtifact)).one()
        session.execute(update(ServingForm).values(content=b"\x80\x05N."))
    assert client.post("/v2/repository/models/iris/unload").status_code == 200
    response = client.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})
    assert response.status_code == 503
    assert response.json()["code"] == "artifact_integrity_error"
    assert "Serving form" in response.json()["message"]


def test_serving_a_skops_version_never_imports_skops(
    client: TestClient, settings: Settings, admin_key: str
) -> None:
    register_iris(client, alias="production")
    script = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from modelserve.app import create_app
        from modelserve.config import Settings

        settings = Settings(
            database_url={settings.database_url!r}, data_dir={str(settings.data_dir)!r}
        )
        with TestClient(create_app(settings), headers={{"X-API-Key": {admin_key!r}}}) as client:
            answer = client.post(
                "/v1/models/iris/predict", json={{"instances": [{iris_instance()!r}]}}
            )
            assert answer.status_code == 200, answer.text
        print(sorted(m for m in sys.modules if m.split(".")[0] == "skops"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
