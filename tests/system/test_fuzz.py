"""Schemathesis against a live instance (``idp serve`` on PostgreSQL + Redis), driven by the
OpenAPI description in docs/openapi.yaml: no 5xx except a documented 503, and every
status code, content type, header and body matches the description.

The run authenticates where the description says an operation needs it (a client's
secret, an access token, an initial access token, a registration access token), so the
generated requests reach the endpoints' real work, not only their 401s.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from clients.mockrp.transport import HTTPTransport
from tests.system.cluster import ROOT, _bin, cluster

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.system]

SPEC = ROOT / "docs" / "openapi.yaml"
# positive_data_acceptance expects a schema-valid request to succeed; here a valid-looking
# token request with a made-up code must be refused (invalid_grant), so it cannot hold.
EXCLUDED_CHECKS = "positive_data_acceptance"


def test_json_endpoints_survive_fuzzing(tmp_path):
    # schemathesis is a test dependency (pyproject.toml): `st` missing fails, never skips.
    with cluster(tmp_path / "c", instances=1, workers=2, behind_nginx=False,
                 extra_env={"IDP_LOGIN_PER_IP_PER_MINUTE": "100000"}) as c:  # fmt: skip
        service = json.loads(
            c.cli("clients", "create", "--name", "Fuzz service", "--grant-type",
                  "client_credentials", "--scope", "", "--json")
        )  # fmt: skip
        http = HTTPTransport(timeout=10)
        token = http.request(
            "POST", f"{c.issuer}/token", data={"grant_type": "client_credentials"},
            auth=(service["client_id"], service["client_secret"]),
        ).json()["access_token"]  # fmt: skip
        initial = json.loads(
            c.cli("clients", "issue-registration-token", "--uses", "100000", "--json")
        )["initial_access_token"]
        registered = http.request(
            "POST", f"{c.issuer}/connect/register",
            data=json.dumps({"client_name": "Fuzzed", "redirect_uris": ["https://rp.example/cb"]}),
            headers={"Authorization": f"Bearer {initial}", "Content-Type": "application/json"},
        ).json()  # fmt: skip
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            f"""
[auth.openapi.clientBasic]
username = "{service["client_id"]}"
password = "{service["client_secret"]}"

[auth.openapi.accessToken]
bearer = "{token}"

[auth.openapi.initialAccessToken]
bearer = "{initial}"

[auth.openapi.registrationAccessToken]
bearer = "{registered["registration_access_token"]}"
"""
        )
        proc = subprocess.run(
            [_bin("st"), "--config-file", str(config), "--no-color", "run", str(SPEC),
             "--url", c.issuer, "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
             "--phases", "examples,coverage,fuzzing", "--max-examples", "40",
             "--workers", "2", "--seed", "20261128", "--request-timeout", "20",
             "--generation-database", "none"],
            cwd=tmp_path, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        (tmp_path / "schemathesis.log").write_text(out)
        assert proc.returncode == 0, out[:12000] + "\n" + c.logs()[-3000:]
        assert "Traceback" not in c.logs(), c.logs()[-5000:]
