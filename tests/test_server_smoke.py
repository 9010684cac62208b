"""The session's Argilla server answers the real SDK (a quick check; the full suite is in test_server.py)."""


def test_owner_and_curator_connect(argilla_server):
    client = argilla_server.client()
    assert client.me.username == "owner"
    assert client.workspaces(argilla_server.workspace_name) is not None
    user, key = argilla_server.add_user("smoke-curator")
    me = argilla_server.client(key).me
    assert me.username == "smoke-curator" and str(me.role).endswith("annotator")
