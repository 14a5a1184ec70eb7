"""``idp resources``, ``idp groups`` and ``idp clients create|update --resource``, run as
real subprocesses against a temporary SQLite database: ``--json`` output, errors as one
JSON object on stderr, exit status 1 for a refusal and 2 for a usage error."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_cli import CLI, PASSWORD

URI = "https://api.example.gov/forms"


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> CLI:
    cli = CLI(tmp_path_factory.mktemp("cli-apis"))
    assert "database at head" in cli.ok("db", "upgrade")
    return cli


def _json(cli: CLI, *args: str):
    return json.loads(cli.ok(*args, "--json"))


def _json_error(cli: CLI, *args: str, code: int) -> dict:
    result = cli(*args, "--json")
    assert result.returncode == code, result
    error = json.loads(result.stderr)
    assert error["exit_code"] == code and "Traceback" not in result.stderr
    return error


def test_resources_create_show_list_update_delete(cli):
    cli.ok("clients", "create", "--name", "Forms API", "--client-id", "forms-api",
           "--grant-type", "client_credentials", "--scope", "")  # fmt: skip
    created = _json(cli, "resources", "create", "--uri", URI, "--scope", "forms:read",
                    "--scope", "forms:write = Change your forms", "--name", "Forms",
                    "--client", "forms-api")  # fmt: skip
    assert created == {
        "uri": URI, "name": "Forms", "client_id": "forms-api",
        "scopes": [{"name": "forms:read", "description": ""},
                   {"name": "forms:write", "description": "Change your forms"}],
        "clients": [], "created_at": created["created_at"],
    }  # fmt: skip
    assert _json(cli, "resources", "show", URI)["uri"] == URI
    assert [r["uri"] for r in _json(cli, "resources", "list")] == [URI]
    text = cli.ok("resources", "show", URI)
    assert "forms:write  (Change your forms)" in text and "forms-api" in text

    updated = _json(cli, "resources", "update", URI, "--scope", "forms:read=Read your forms",
                    "--no-client", "--name", "Forms API")  # fmt: skip
    assert updated["client_id"] is None and updated["name"] == "Forms API"
    assert updated["scopes"] == [{"name": "forms:read", "description": "Read your forms"}]
    moved = _json(cli, "resources", "update", URI, "--uri", f"{URI}/v2")
    assert moved["uri"] == f"{URI}/v2"
    assert _json(cli, "resources", "delete", f"{URI}/v2", "--yes") == {"deleted": f"{URI}/v2"}
    assert _json(cli, "resources", "list") == []
    events = cli.sql("SELECT event FROM audit_events WHERE event LIKE 'resource.%' ORDER BY id")
    assert [e for (e,) in events] == ["resource.created", "resource.updated",
                                      "resource.updated", "resource.deleted"]  # fmt: skip


@pytest.mark.parametrize(("args", "words"), [
    (("--uri", "http://api.example.gov/"), "must use https"),
    (("--uri", "https://api.example.gov/#x"), "fragment"),
    (("--uri", URI + "/x", "--scope", "openid"), "OpenID Connect scope"),
    (("--uri", URI + "/x", "--scope", "bad name"), "is not valid"),
    (("--uri", URI + "/x", "--client", "nobody"), "There is no client"),
])  # fmt: skip
def test_resources_create_refuses_bad_values_as_usage_errors(cli, args, words):
    assert words in _json_error(cli, "resources", "create", *args, code=2)["error"]
    assert words in cli.usage("resources", "create", *args)


def test_resources_conflicts_are_refusals_and_unknown_uris_usage_errors(cli):
    cli.ok("resources", "create", "--uri", "https://one.example.gov/", "--scope", "one:read")
    again = _json_error(cli, "resources", "create", "--uri", "https://one.example.gov/", code=1)
    assert "already registered" in again["error"]
    taken = cli.refused("resources", "create", "--uri", "https://two.example.gov/",
                        "--scope", "one:read")  # fmt: skip
    assert "already belongs to the API https://one.example.gov/" in taken
    for verb in ("show", "delete", "update"):
        assert "no API" in _json_error(cli, "resources", verb, "https://none.example/", code=2)[
            "error"]  # fmt: skip
    cli.usage("resources", "update", "https://one.example.gov/", "--client", "x", "--no-client")


def test_clients_are_allowed_resources_and_their_scopes(cli):
    api = "https://calendar.example.gov/"
    cli.ok("resources", "create", "--uri", api, "--scope", "cal:read=See your calendar")
    refused = _json_error(cli, "clients", "create", "--name", "cal", "--redirect-uri",
                          "https://rp.example/cb", "--scope", "openid cal:read", code=2)  # fmt: skip
    assert "which this application may not use" in refused["error"]
    unknown = cli.usage("clients", "create", "--name", "x", "--redirect-uri",
                        "https://rp.example/cb", "--resource", "https://nowhere.example/")  # fmt: skip
    assert "no API" in unknown
    client = _json(cli, "clients", "create", "--name", "cal", "--redirect-uri",
                   "https://rp.example/cb", "--scope", "openid cal:read", "--resource", api)  # fmt: skip
    assert client["resources"] == [api]
    assert _json(cli, "resources", "show", api)["clients"] == [client["client_id"]]
    # --no-resource with the scope still there is refused; together they pass.
    cli.usage("clients", "update", client["client_id"], "--no-resource")
    cli.usage("clients", "update", client["client_id"], "--no-resource", "--resource", api)
    cleared = _json(cli, "clients", "update", client["client_id"], "--no-resource",
                    "--scope", "openid")  # fmt: skip
    assert cleared["resources"] == [] and cleared["scope"] == "openid"
    again = _json(cli, "clients", "update", client["client_id"], "--resource", api)
    assert again["resources"] == [api]
    # Deleting the API takes it and its scopes from the client.
    cli.ok("clients", "update", client["client_id"], "--scope", "openid cal:read")
    cli.ok("resources", "delete", api, "--yes")
    after = _json(cli, "clients", "show", client["client_id"])
    assert after["resources"] == [] and after["scope"] == "openid"


def test_groups_commands(cli):
    cli.ok("users", "create", "--email", "gia@example.com", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert _json(cli, "groups", "create", "suppliers", "--description", "Contract suppliers")[
        "name"] == "suppliers"  # fmt: skip
    assert "created group auditors" in cli.ok("groups", "create", "auditors")
    assert "already exists" in _json_error(cli, "groups", "create", "suppliers", code=1)["error"]
    assert "letters, digits" in cli.usage("groups", "create", "has space")

    assert _json(cli, "groups", "add", "suppliers", "gia@example.com") == {
        "group": "suppliers", "added": "gia@example.com"}  # fmt: skip
    assert "already in suppliers" in cli.refused("groups", "add", "suppliers", "gia@example.com")
    assert "no group" in cli.usage("groups", "add", "nobody", "gia@example.com")
    assert "no user" in cli.usage("groups", "add", "suppliers", "nobody@example.com")

    listed = _json(cli, "groups", "list")
    assert [(g["name"], g["members"]) for g in listed] == [("auditors", 0), ("suppliers", 1)]
    assert _json(cli, "groups", "list", "suppliers")["members"] == ["gia@example.com"]
    assert cli.ok("groups", "list", "suppliers").strip() == "gia@example.com"

    assert "removed from suppliers" in cli.ok("groups", "remove", "suppliers", "gia@example.com")
    assert "is not in suppliers" in _json_error(cli, "groups", "remove", "suppliers",
                                                "gia@example.com", code=1)["error"]  # fmt: skip
    cli.ok("groups", "add", "auditors", "gia@example.com")
    assert _json(cli, "groups", "delete", "auditors", "--yes") == {"deleted": "auditors",
                                                                    "members": 1}  # fmt: skip
    assert [g["name"] for g in _json(cli, "groups", "list")] == ["suppliers"]
    events = cli.sql("SELECT event FROM audit_events WHERE event LIKE 'group.%' ORDER BY id")
    assert [e for (e,) in events] == [
        "group.created", "group.created", "group.member_added", "group.member_removed",
        "group.member_added", "group.deleted",
    ]  # fmt: skip
