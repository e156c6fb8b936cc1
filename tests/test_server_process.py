"""A real ``modelserve serve`` process: applies migrations at start, serves and logs."""

from __future__ import annotations

from pathlib import Path

import httpx
from factories import fit_iris, iris_instance, iris_schema, to_bytes

from modelserve.config import Settings


def test_served_process_registers_predicts_and_logs(
    server: tuple[str, dict[str, str]],
) -> None:
    import orjson

    base, auth = server
    metadata = {"name": "iris", "input_schema": iris_schema(), "alias": "production"}
    with httpx.Client(base_url=base, headers=auth, timeout=30) as http:
        created = http.post(
            "/v1/models",
            data={"metadata": orjson.dumps(metadata).decode()},
            files={"file": ("m.skops", to_bytes(fit_iris(), "skops"))},
        )
        assert created.status_code == 201, created.text
        answer = http.post("/v1/models/iris/predict", json={"instances": [iris_instance(0)]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == ["setosa"]
        logged = http.get("/v1/predictions", params={"model": "iris"}).json()["data"]
        assert logged[0]["request_id"] == answer.json()["request_id"]
        assert logged[0]["caller"].startswith("ops (msk_")
        empty_body = http.post("/v1/models/iris/predict", content=b"")
        assert empty_body.status_code == 400
        assert empty_body.json()["code"] == "malformed_json"
    missing_header = httpx.post(f"{base}/v1/models/iris/predict", json={"instances": []})
    assert missing_header.status_code == 401
    assert missing_header.headers["www-authenticate"] == "Bearer"


def test_settings_default_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'd').resolve()}/modelserve.db"
    assert Settings(database_url="postgresql://u@h/db").resolved_database_url.startswith(
        "postgresql+psycopg://"
    )
