"""The command line, end to end: train from a CSV, register a file, alias, then predict over
HTTP on the same database and find the logged row."""

from __future__ import annotations

import json
from pathlib import Path

from factories import fit_iris, iris_schema, mixed_csv, to_bytes
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modelserve.cli.main import app
from modelserve.config import Settings

runner = CliRunner()


def invoke(*args: str, input_text: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=input_text)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_train_csv_then_predict_and_find_log(
    cli_env: Settings, client: TestClient, tmp_path: Path
) -> None:
    csv = mixed_csv(tmp_path / "churn.csv")
    output = invoke(
        "train",
        str(csv),
        "--target",
        "churn",
        "--name",
        "churn",
        "--algorithm",
        "random_forest",
        "--alias",
        "production",
        "--folds",
        "3",
    )
    assert "registered" in output
    assert "accuracy" in output
    version = client.get("/v1/models/churn/versions/1").json()
    schema = {f["name"]: f for f in version["input_schema"]["features"]}
    assert schema["income"]["type"] == "number"
    assert schema["income"]["nullable"] is True
    assert schema["age"]["type"] == "number"  # integer-valued, but 35.5 is a valid input
    assert schema["member"]["type"] == "boolean"
    assert schema["region"]["categories"] == ["east", "north", "south"]
    assert version["output"]["classes"] == ["no", "yes"]
    assert version["aliases"] == ["production"]
    assert version["metrics"]["accuracy"]["mean"] > 0.6
    instance = {"income": 91000.0, "age": 30, "member": True, "region": "south"}
    response = client.post("/v1/models/churn/predict", json={"instances": [instance]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] in (["yes"], ["no"])
    [row] = client.get("/v1/predictions", params={"model": "churn"}).json()["data"]
    assert (row["request_id"], row["version"], row["inputs"]) == (body["request_id"], 1, [instance])
    assert row["outputs"]["predictions"] == body["predictions"]
    wrong = client.post(
        "/v1/models/churn/predict",
        json={"instances": [instance | {"member": "0", "region": "west"}]},
    )
    assert [(p["feature"], p["type"]) for p in wrong.json()["details"]] == [
        ("member", "wrong_type"),
        ("region", "not_allowed"),
    ]


def test_register_alias_list_show(cli_env: Settings, tmp_path: Path) -> None:
    artifact = tmp_path / "iris.joblib"
    artifact.write_bytes(to_bytes(fit_iris(), "joblib"))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(iris_schema()))
    assert "iris v1" in invoke(
        "models", "register", str(artifact), "--name", "iris", "--schema", str(schema)
    )
    invoke("models", "register", str(artifact), "--name", "iris", "--schema", str(schema))
    assert "iris@production -> v2" in invoke("models", "alias", "iris", "production", "2")
    assert "(was v2)" in invoke("models", "alias", "iris", "production", "1")
    listing = invoke("models", "list")
    assert "iris" in listing
    assert "production->v1" in listing
    shown = invoke("models", "show", "iris")
    assert "joblib" in shown
    assert "classification" in shown


def test_cli_errors_are_clear(cli_env: Settings, tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "show", "ghost"])
    assert result.exit_code == 1
    assert "not_found" in result.output
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(
        b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06"
        b"system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94."
    )
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(iris_schema()))
    result = runner.invoke(
        app, ["models", "register", str(evil), "--name", "evil", "--schema", str(schema)]
    )
    assert result.exit_code == 1
    assert "unsafe_artifact" in result.output


def test_flags_sklearn_mismatch_in_cli(cli_env: Settings, client: TestClient) -> None:
    from factories import register_iris

    register_iris(client, environment={"scikit-learn": "0.24.2"})
    assert "0.24.2" in invoke("models", "show", "iris")
    assert "trained with" in invoke("models", "show", "iris")


def test_db_commands(cli_env: Settings) -> None:
    from modelserve.core.migrate import head_revision

    output = invoke("db", "current")
    assert f"current: {head_revision()}" in output
    assert f"head:    {head_revision()}" in output
    invoke("db", "upgrade")


def test_demo_trains_once(cli_env: Settings, client: TestClient) -> None:
    first = invoke("demo", "--no-serve")
    assert "registered iris v1 as production" in first
    assert "already registered" in invoke("demo", "--no-serve")
    instance = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
    response = client.post("/v1/models/iris/predict", json={"instances": [instance]})
    assert response.json()["predictions"] == ["virginica"]


def test_users_and_api_keys_commands(cli_env: Settings, client: TestClient) -> None:
    created = invoke(
        "users",
        "create",
        "Olga",
        "--role",
        "maintainer",
        "--email",
        "olga@example.com",
        input_text="a strong password\n",
    )
    assert "created user Olga" in created
    form = {"username": "olga", "password": "a strong password"}
    assert TestClient(client.app).post("/v1/auth/token", data=form).status_code == 200
    assert "Olga" in invoke("users", "list")
    assert "role admin" in invoke("users", "set-role", "olga", "admin")
    assert "disabled" in invoke("users", "disable", "olga")
    assert "enabled" in invoke("users", "enable", "olga")
    output = invoke(
        "api-keys",
        "create",
        "olga",
        "--name",
        "batch",
        "--model",
        "iris",
        "--quota",
        "10",
        "--expires-days",
        "30",
    )
    key = output.strip().splitlines()[-1]
    assert key.startswith("msk_")
    me = TestClient(client.app, headers={"X-API-Key": key}).get("/v1/users/me")
    assert me.json()["username"] == "Olga"
    listing = invoke("api-keys", "list", "olga")
    assert "batch" in listing
    assert key not in listing
    key_id = client.get("/v1/api-keys").json()["data"][-1]["id"]
    assert "revoked" in invoke("api-keys", "revoke", str(key_id))
    assert "deleted olga" in invoke("users", "delete", "olga", "--yes")
    short = runner.invoke(app, ["users", "create", "weak"], input="short\n")
    assert short.exit_code == 1
    assert "validation_error" in short.output


def test_demo_prints_a_working_admin_key(cli_env: Settings, client: TestClient) -> None:
    output = invoke("demo", "--no-serve")
    key_file = cli_env.data_dir / "demo-api-key"
    key = key_file.read_text().strip()
    assert key in output
    assert key_file.stat().st_mode & 0o777 == 0o600
    me = TestClient(client.app, headers={"X-API-Key": key}).get("/v1/users/me").json()
    assert (me["username"], me["role"]) == ("demo-admin", "admin")
    second = invoke("demo", "--no-serve")
    assert key_file.read_text().strip() in second
    assert key_file.read_text().strip() != key
